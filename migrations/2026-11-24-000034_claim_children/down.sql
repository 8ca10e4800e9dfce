DROP FUNCTION cpis_claim_children(bigint[], integer, text[], text[], timestamptz[], timestamptz[], bigint[]);
