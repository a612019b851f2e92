-- Erasure (ForgetAddress) and domain marks on PostgreSQL.

-- An address's entries of the change log, found without reading the tenant's whole log: an
-- erasure blanks their personal fields in place.
CREATE INDEX changes_by_address ON changes (tenant, address_hash)
    WHERE address_hash IS NOT NULL;

-- The marked domains (suppressed or accept-all) of a tenant: whether it has any (every status
-- lookup and import screen asks), and its suppressed domains newest first
-- (ListSuppressedDomains). Few rows: most domains hold only activity.
CREATE INDEX domains_marked ON domains (tenant, suppressed_since, domain)
    WHERE marks IS NOT NULL;
