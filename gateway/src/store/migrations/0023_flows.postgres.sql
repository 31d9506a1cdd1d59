-- Declarative flows: each tenant's YAML documents (the source as written, checked before it
-- is stored), a conversation's flow in progress (a `flows::flow::FlowRun` as JSON, written in
-- the turn's transaction, so a run survives a crash exactly where it was), and the tags flows
-- put on a conversation (a JSON array).
CREATE TABLE tenant_flows (
    tenant_id TEXT NOT NULL,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
ALTER TABLE conversations ADD COLUMN flow_run TEXT;
ALTER TABLE conversations ADD COLUMN tags TEXT;
