-- Owner pages: unanswered questions get resolved (answered or dismissed); the owner's answers
-- make up the tenant's owner FAQ document; the golden question set of the regression check.
ALTER TABLE unanswered_questions ADD COLUMN resolved_at BIGINT;
ALTER TABLE unanswered_questions ADD COLUMN resolution TEXT;
CREATE TABLE owner_answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    created_by TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX owner_answers_tenant ON owner_answers (tenant_id, id);
CREATE TABLE golden_questions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id TEXT NOT NULL,
    query TEXT NOT NULL,
    case_json TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX golden_questions_query ON golden_questions (tenant_id, query);
