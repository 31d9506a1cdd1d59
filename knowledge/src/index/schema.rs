//! The tantivy schema: one record per chunk (its analyzed tokens in `body`) and one per document
//! (its listing), told apart by `kind`; and reading chunks back from stored records.

use tantivy::TantivyDocument;
use tantivy::schema::{
    Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions,
    Value,
};

use crate::document::Chunk;
use crate::error::KnowledgeError;

/// Name under which the whitespace tokenizer for pre-analyzed text is registered.
pub(super) const TOKENIZER: &str = "sapa_analyzed";

pub(super) const KIND_CHUNK: &str = "chunk";
pub(super) const KIND_DOCUMENT: &str = "document";

#[derive(Debug, Clone, Copy)]
pub(super) struct Fields {
    pub(super) kind: Field,
    pub(super) tenant: Field,
    pub(super) document_id: Field,
    pub(super) chunk_id: Field,
    pub(super) ordinal: Field,
    pub(super) name: Field,
    pub(super) title: Field,
    pub(super) heading_path: Field,
    pub(super) text: Field,
    pub(super) body: Field,
    pub(super) sha256: Field,
    pub(super) chunk_count: Field,
    pub(super) lang: Field,
    pub(super) title_tokens: Field,
}

pub(super) fn schema() -> Schema {
    let mut builder = Schema::builder();
    builder.add_text_field("kind", STRING | STORED);
    builder.add_text_field("tenant", STRING | STORED);
    builder.add_text_field("document_id", STRING | STORED);
    builder.add_text_field("chunk_id", STRING | STORED);
    builder.add_u64_field("ordinal", INDEXED | STORED);
    builder.add_text_field("name", STORED);
    builder.add_text_field("title", STORED);
    builder.add_text_field("heading_path", STORED);
    builder.add_text_field("text", STORED);
    let body = TextOptions::default().set_stored().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    builder.add_text_field("body", body);
    builder.add_text_field("sha256", STORED);
    builder.add_u64_field("chunk_count", STORED);
    builder.add_text_field("lang", STRING | STORED);
    builder.add_u64_field("title_tokens", STORED);
    builder.build()
}

impl Fields {
    pub(super) fn new(schema: &Schema) -> Result<Self, KnowledgeError> {
        let get = |name: &str| schema.get_field(name).map_err(KnowledgeError::from);
        Ok(Self {
            kind: get("kind")?,
            tenant: get("tenant")?,
            document_id: get("document_id")?,
            chunk_id: get("chunk_id")?,
            ordinal: get("ordinal")?,
            name: get("name")?,
            title: get("title")?,
            heading_path: get("heading_path")?,
            text: get("text")?,
            body: get("body")?,
            sha256: get("sha256")?,
            chunk_count: get("chunk_count")?,
            lang: get("lang")?,
            title_tokens: get("title_tokens")?,
        })
    }
}

pub(super) fn stored_str(doc: &TantivyDocument, field: Field) -> Option<&str> {
    doc.get_first(field).and_then(|v| v.as_str())
}

pub(super) fn chunk_from_doc(
    doc: &TantivyDocument,
    fields: &Fields,
) -> Result<Chunk, KnowledgeError> {
    let get = |field: Field, name: &'static str| {
        stored_str(doc, field)
            .map(str::to_owned)
            .ok_or(KnowledgeError::Corrupt(name))
    };
    let heading_path: Vec<String> =
        serde_json::from_str(&get(fields.heading_path, "heading_path")?)
            .map_err(|_| KnowledgeError::Corrupt("heading_path"))?;
    Ok(Chunk {
        id: get(fields.chunk_id, "chunk_id")?,
        tenant: get(fields.tenant, "tenant")?,
        document_id: get(fields.document_id, "document_id")?,
        document_name: get(fields.name, "name")?,
        title: get(fields.title, "title")?,
        heading_path,
        text: get(fields.text, "text")?,
    })
}
