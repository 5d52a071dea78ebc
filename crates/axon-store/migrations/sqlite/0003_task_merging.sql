-- A task whose latest attempt succeeded and whose session is being merged into the run's
-- integration branch: its output is recorded, and `resume` finishes the merge instead of
-- running the task again.
ALTER TABLE tasks ADD COLUMN merging INTEGER NOT NULL DEFAULT 0;
