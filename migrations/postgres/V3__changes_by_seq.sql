-- The change log in sequence order, every tenant's: what a replica's catch-up reads
-- (`changes WHERE seq > its position`) to keep its in-memory suppressed index exact.
CREATE INDEX changes_by_seq ON changes (seq);
