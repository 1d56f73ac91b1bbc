-- Keys every node of a fleet shares, created by the first node that needs one: the STUN nonce
-- key, so a nonce one node issued (in a challenge or a signed 300 Try Alternate) is accepted
-- by the node the client is sent to.
CREATE TABLE fleet_keys (
    name        TEXT PRIMARY KEY,
    key         BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
