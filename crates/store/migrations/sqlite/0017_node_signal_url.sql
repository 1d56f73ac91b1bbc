-- Each node's public signalling endpoint (issue 13): a draining node tells its signalling
-- clients to reconnect there.
ALTER TABLE nodes ADD COLUMN signal_url TEXT;
