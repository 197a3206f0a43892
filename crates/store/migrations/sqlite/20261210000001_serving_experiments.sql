-- At most one running experiment serves a prompt's label (issue 18), whichever replica
-- starts it: the (prompt, label) a running experiment serves is unique; experiments that
-- serve nothing or do not run have an empty serving_prompt, which the index leaves out.
ALTER TABLE experiments ADD COLUMN serving_prompt TEXT NOT NULL DEFAULT '';
ALTER TABLE experiments ADD COLUMN serving_label TEXT NOT NULL DEFAULT '';
-- Experiments running before this migration: the oldest per (prompt, label) keeps it
-- (until now only one process checked, so two replicas may have raced).
UPDATE experiments
SET serving_prompt = json_extract(record, '$.serves_prompt'), serving_label = json_extract(record, '$.serves_label')
WHERE status = 'running'
  AND COALESCE(json_extract(record, '$.serves_prompt'), '') <> ''
  AND NOT EXISTS (
      SELECT 1 FROM experiments o
      WHERE o.status = 'running'
        AND json_extract(o.record, '$.serves_prompt') = json_extract(experiments.record, '$.serves_prompt')
        AND json_extract(o.record, '$.serves_label') = json_extract(experiments.record, '$.serves_label')
        AND (o.created_at_us, o.id) < (experiments.created_at_us, experiments.id)
  );
CREATE UNIQUE INDEX experiments_serving ON experiments (serving_prompt, serving_label)
    WHERE serving_prompt <> '';
