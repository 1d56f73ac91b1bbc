-- A tenant's allowed regions (issue 13): ICE lists name only nodes of these regions (data
-- residency). Comma-separated region names; NULL: any region.
ALTER TABLE tenants ADD COLUMN allowed_regions TEXT;
