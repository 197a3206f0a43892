-- An import's reservation of its dataset, so that replicas exclude each other: while
-- it is live, the import stages its batches at the dataset's next version and no
-- other change (another import, added or deleted samples, a delete) touches the
-- dataset. The importing replica renews it; when it lapses (the replica died), the
-- next change discards the staged samples and drops it.
CREATE TABLE dataset_imports (
    dataset_id    TEXT NOT NULL PRIMARY KEY,
    holder        TEXT NOT NULL,
    base_version  BIGINT NOT NULL,
    expires_at_us BIGINT NOT NULL
);
