-- Client addresses refused on every listener (TURN, STUN and the API), managed by the operator
-- through the API; every node loads them at its directory reload. cidr: normalised network.
CREATE TABLE client_deny_list (
    id          TEXT PRIMARY KEY,
    cidr        TEXT NOT NULL UNIQUE,
    note        TEXT,
    created_at  BIGINT NOT NULL
);
