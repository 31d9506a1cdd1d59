//! Hybrid retrieval through `[embeddings]`: the fake OpenAI-compatible server embeds documents
//! at upload and questions at answer time; a paraphrase BM25 cannot match is answered through
//! the vectors, and an embedding outage falls back to BM25.

use gateway::config::DatabaseTarget;
use gateway::store::Store;
use knowledge::embed::HashEmbedder;
use sapa_tests::fake_openai::FakeOpenAi;
use sapa_tests::{TestApp, spawn_app};
use serde_json::Value;

const TENANT: &str = "kafe";
const PETS: &str = "# Kafe Teras\n\n## Hewan peliharaan\nAnjing boleh masuk teras.\n\n## Parkir\nParkir motor gratis di basement gedung.\n";
const PASSAGE: &str = "Anjing boleh masuk teras.";
/// No word of it is in the document; the fake's embedder knows the synonyms.
const PARAPHRASE: &str = "doggy allowed patio?";

fn fake_embedder() -> HashEmbedder {
    HashEmbedder::new(256)
        .with_synonym("doggy", "anjing")
        .with_synonym("allowed", "masuk")
        .with_synonym("patio", "teras")
}

async fn api_key(app: &TestApp, tenant: &str) -> String {
    let store = Store::connect(
        &DatabaseTarget::Sqlite(app.data_dir.path().join("sapa.db")),
        1,
    )
    .await
    .unwrap();
    let key = gateway::api_key::generate();
    store
        .create_api_key(tenant, &key.prefix, &key.hash)
        .await
        .unwrap();
    store.close().await;
    key.key
}

async fn upload(app: &TestApp, key: &str, name: &str, body: &str) -> Value {
    let response = app
        .client
        .post(format!("{}/v1/admin/knowledge/documents", app.address))
        .query(&[("name", name)])
        .bearer_auth(key)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.unwrap()
}

/// Asks `question` in a new session and returns the bot's first answer.
async fn ask(app: &TestApp, id: &str, question: &str) -> String {
    let session = app.session(TENANT).await;
    assert_eq!(app.post(&session, id, question).await.status(), 202);
    let bots = app.bot_messages(&session, 1).await;
    bots[0]["text"].as_str().unwrap().to_owned()
}

fn config(fake: &FakeOpenAi) -> String {
    format!(
        "{}[tenants.{TENANT}]\nname = \"Kafe Teras\"\nlocale = \"id\"\n[demo]\nenabled = false\n",
        fake.embeddings_config()
    )
}

#[tokio::test]
async fn documents_and_questions_are_embedded_and_a_paraphrase_is_answered() {
    let fake = FakeOpenAi::start([]).await;
    fake.embed_with(fake_embedder());
    let app = spawn_app(&config(&fake)).await;
    let key = api_key(&app, TENANT).await;

    let body = upload(&app, &key, "kafe.md", PETS).await;
    assert_eq!(body["outcome"], "indexed");
    // Every chunk was sent to the embeddings endpoint at upload.
    let embedded = fake.embedded_texts();
    assert!(embedded.iter().any(|t| t.contains(PASSAGE)), "{embedded:?}");
    assert!(
        embedded.iter().any(|t| t.contains("Parkir motor gratis")),
        "{embedded:?}"
    );

    let answer = ask(&app, "q-1", PARAPHRASE).await;
    assert!(
        fake.embedded_texts().iter().any(|t| t == PARAPHRASE),
        "the question was not embedded: {:?}",
        fake.embedded_texts()
    );
    assert!(answer.contains(PASSAGE), "{answer}");

    // The admin search shows the same hybrid result, answerable.
    let response = app
        .client
        .get(format!("{}/v1/admin/knowledge/search", app.address))
        .query(&[("q", PARAPHRASE)])
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let first = &body["results"][0];
    assert!(first["text"].as_str().unwrap().contains(PASSAGE), "{body}");
    assert_eq!(first["answerable"], true, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn without_embeddings_or_during_an_outage_bm25_alone_does_not_answer_the_paraphrase() {
    let fake = FakeOpenAi::start([]).await;
    fake.embed_with(fake_embedder());
    let app = spawn_app(&config(&fake)).await;
    let key = api_key(&app, TENANT).await;
    upload(&app, &key, "kafe.md", PETS).await;

    // The embeddings endpoint goes down: the question is searched with BM25 alone, which
    // cannot connect it to the passage, so the bot does not answer from it.
    fake.set_embeddings_down(true);
    let answer = ask(&app, "q-1", PARAPHRASE).await;
    assert!(!answer.contains(PASSAGE), "{answer}");
    // A question BM25 can match is still answered during the outage.
    let answer = ask(&app, "q-2", "anjing boleh masuk?").await;
    assert!(answer.contains(PASSAGE), "{answer}");
    let metrics = app.metrics().await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("sapa_embedding_fallbacks_total{stage=\"query\"}")
                && !l.ends_with(" 0")
        ),
        "{metrics}"
    );

    // An upload during the outage is still indexed (for BM25); uploading the same bytes once
    // the endpoint is back adds its vectors, and the paraphrase is answered.
    let other = "# Menu\n\n## Kue\nKue lapis legit tersedia setiap hari.\n";
    assert_eq!(
        upload(&app, &key, "menu.md", other).await["outcome"],
        "indexed"
    );
    fake.set_embeddings_down(false);
    assert_eq!(
        upload(&app, &key, "menu.md", other).await["outcome"],
        "unchanged"
    );
    assert!(
        fake.embedded_texts()
            .iter()
            .any(|t| t.contains("Kue lapis legit"))
    );
    let answer = ask(&app, "q-3", PARAPHRASE).await;
    assert!(answer.contains(PASSAGE), "{answer}");
    app.stop().await;
}
