//! The language model's prompts: tera templates from `prompts/`, embedded at compile time and
//! compiled once at start ([`Prompts::load`]), so a broken template fails the start rather
//! than a conversation. Rendering is pure.

use serde::Serialize;

use crate::state::Locale;

/// Every template, by file name in `prompts/` (`<name>.<locale>.tera`).
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "system.id.tera",
        include_str!("../../prompts/system.id.tera"),
    ),
    (
        "system.en.tera",
        include_str!("../../prompts/system.en.tera"),
    ),
    (
        "answer.id.tera",
        include_str!("../../prompts/answer.id.tera"),
    ),
    (
        "answer.en.tera",
        include_str!("../../prompts/answer.en.tera"),
    ),
];

/// A knowledge passage given to the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptChunk {
    /// Chunk id the model cites.
    pub id: String,
    /// Document title and heading.
    pub title: String,
    /// Passage text.
    pub text: String,
}

/// An earlier message of the conversation, given to the model as context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptTurn {
    /// `customer` or `assistant` (the bot or an agent of the business).
    pub role: &'static str,
    /// What was said.
    pub text: String,
}

/// What the templates see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptContext {
    /// Business name.
    pub tenant_name: String,
    /// The owner's instructions (may be empty).
    pub instructions: String,
    /// The customer's question (the debounced batch).
    pub question: String,
    /// Retrieved passages, best first.
    pub chunks: Vec<PromptChunk>,
    /// Consecutive unanswered questions before this one.
    pub abstain_streak: u32,
    /// Earlier messages of the conversation, oldest first (context only, never instructions).
    pub history: Vec<PromptTurn>,
    /// Older pending customer messages left out of `question` (per-turn limits).
    pub omitted_messages: usize,
    /// What a human agent handled before handing the chat back (empty: none).
    pub handoff_summary: String,
    /// The tenant's flows the model may start instead of answering (empty: none offered).
    pub flows: Vec<PromptFlow>,
}

/// A tenant flow offered to the model, by name and the owner's description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PromptFlow {
    /// The flow's name (what the model answers with).
    pub name: String,
    /// What the flow does, as its owner described it.
    pub description: String,
}

/// A rendered prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPrompt {
    /// System message.
    pub system: String,
    /// User message (passages and question).
    pub user: String,
}

/// A template failed to compile or render.
#[derive(Debug, Clone, thiserror::Error)]
#[error("prompt template {name}: {message}")]
pub struct PromptError {
    /// Template file name.
    pub name: String,
    /// What is wrong (tera's error chain).
    pub message: String,
}

/// The compiled templates.
#[derive(Debug)]
pub struct Prompts {
    tera: tera::Tera,
}

impl Prompts {
    /// Compiles every template and renders each once with sample data.
    ///
    /// # Errors
    /// The first template that does not compile or render.
    pub fn load() -> Result<Self, PromptError> {
        let mut tera = tera::Tera::default();
        tera.autoescape_on(vec![]);
        for (name, text) in TEMPLATES {
            tera.add_raw_template(name, text).map_err(|e| PromptError {
                name: (*name).to_owned(),
                message: chain(&e),
            })?;
        }
        let prompts = Self { tera };
        for locale in [Locale::Id, Locale::En] {
            prompts.render(locale, &sample())?;
        }
        crate::texts::check()?;
        Ok(prompts)
    }

    /// Renders the system and user messages in `locale`.
    ///
    /// # Errors
    /// When a template fails to render (cannot happen after [`Prompts::load`] checked it,
    /// short of a bug).
    pub fn render(
        &self,
        locale: Locale,
        ctx: &PromptContext,
    ) -> Result<RenderedPrompt, PromptError> {
        let context = tera::Context::from_serialize(ctx).map_err(|e| PromptError {
            name: "context".to_owned(),
            message: chain(&e),
        })?;
        let render = |kind: &str| {
            let name = format!("{kind}.{}.tera", locale.as_str());
            self.tera
                .render(&name, &context)
                .map(|s| s.trim().to_owned())
                .map_err(|e| PromptError {
                    name,
                    message: chain(&e),
                })
        };
        Ok(RenderedPrompt {
            system: render("system")?,
            user: render("answer")?,
        })
    }
}

/// A cheap estimate of the tokens `text` costs: one per four characters, rounded up (close
/// for Indonesian and English with BPE tokenizers, and never zero for non-empty text).
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(4)
}

impl RenderedPrompt {
    /// [`estimate_tokens`] of both messages.
    pub fn estimated_tokens(&self) -> usize {
        estimate_tokens(&self.system) + estimate_tokens(&self.user)
    }
}

impl Prompts {
    /// Renders like [`Prompts::render`], trimming `ctx` until the estimate fits `max_tokens`:
    /// the oldest history first, then the weakest passages (one always stays), then the
    /// passage and question text. `ctx` is left as rendered, so the caller validates against
    /// the passages the model really saw.
    ///
    /// # Errors
    /// As [`Prompts::render`].
    pub fn render_within(
        &self,
        locale: Locale,
        ctx: &mut PromptContext,
        max_tokens: usize,
    ) -> Result<RenderedPrompt, PromptError> {
        loop {
            let rendered = self.render(locale, ctx)?;
            let estimate = rendered.estimated_tokens();
            if estimate <= max_tokens {
                return Ok(rendered);
            }
            if !ctx.history.is_empty() {
                ctx.history.remove(0);
                continue;
            }
            if ctx.chunks.len() > 1 {
                ctx.chunks.pop();
                continue;
            }
            // One passage left: cut it (and then the question) by the excess, keeping a start.
            let excess = (estimate - max_tokens) * 4;
            // A cut text ends in "…": at `keep_min + 1` characters it cannot get shorter.
            let cut = |text: &mut String, keep_min: usize| -> bool {
                let len = text.chars().count();
                if len <= keep_min + 1 {
                    return false;
                }
                let keep = len.saturating_sub(excess).max(keep_min);
                *text = text.chars().take(keep).collect::<String>() + "…";
                true
            };
            if let Some(chunk) = ctx.chunks.first_mut()
                && cut(&mut chunk.text, 200)
            {
                continue;
            }
            // The question keeps its end (the newest words).
            let len = ctx.question.chars().count();
            if len > 201 {
                let keep = len.saturating_sub(excess).max(200);
                ctx.question =
                    "…".to_owned() + &ctx.question.chars().skip(len - keep).collect::<String>();
                continue;
            }
            // Instructions and templates alone exceed the limit: send the smallest prompt.
            return Ok(rendered);
        }
    }
}

fn sample() -> PromptContext {
    PromptContext {
        tenant_name: "Kopi Contoh".to_owned(),
        instructions: "Sapa pelanggan dengan \"Kak\".".to_owned(),
        question: "jam buka?".to_owned(),
        chunks: vec![PromptChunk {
            id: "doc:0".to_owned(),
            title: "Profil".to_owned(),
            text: "Buka 08.00–22.00".to_owned(),
        }],
        abstain_streak: 1,
        history: vec![
            PromptTurn {
                role: "customer",
                text: "halo, outlet Blok M?".to_owned(),
            },
            PromptTurn {
                role: "assistant",
                text: "Halo Kak, ada yang bisa dibantu?".to_owned(),
            },
        ],
        omitted_messages: 2,
        handoff_summary: String::new(),
        flows: vec![PromptFlow {
            name: "reservasi".to_owned(),
            description: "The customer wants to reserve a table.".to_owned(),
        }],
    }
}

pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn every_file_in_prompts_is_registered_and_renders() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../prompts");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let all: Vec<&(&str, &str)> = TEMPLATES
            .iter()
            .chain(crate::texts::MESSAGE_TEMPLATES)
            .collect();
        let mut registered: Vec<String> = all.iter().map(|(n, _)| (*n).to_owned()).collect();
        registered.sort();
        assert_eq!(
            on_disk, registered,
            "prompts/ and the registered templates differ"
        );
        for (name, text) in all {
            let disk = std::fs::read_to_string(dir.join(name)).unwrap();
            assert_eq!(&disk, text, "{name} is stale");
        }
        let prompts = Prompts::load().unwrap();
        for locale in [Locale::Id, Locale::En] {
            let rendered = prompts.render(locale, &sample()).unwrap();
            assert!(rendered.system.contains("Kopi Contoh"));
            assert!(rendered.system.contains("Sapa pelanggan dengan \"Kak\"."));
            assert!(
                rendered
                    .system
                    .contains("  - reservasi: The customer wants to reserve a table.\n")
                    && rendered.system.contains("|flow")
            );
            assert!(rendered.user.contains("[id: doc:0] Profil"));
            assert!(rendered.user.contains("Buka 08.00–22.00"));
            assert!(rendered.user.contains("jam buka?"));
            assert!(rendered.user.contains("halo, outlet Blok M?"));
            assert!(rendered.user.contains("Halo Kak, ada yang bisa dibantu?"));
            assert!(
                rendered.user.contains('2'),
                "omitted messages are mentioned"
            );
        }
    }

    #[test]
    fn a_prompt_is_trimmed_to_its_token_limit_history_then_passages_then_text() {
        let prompts = Prompts::load().unwrap();
        let mut ctx = sample();
        ctx.flows.clear();
        ctx.history = (0..40)
            .map(|i| PromptTurn {
                role: "customer",
                text: format!("pesan lama nomor {i} {}", "bla ".repeat(100)),
            })
            .collect();
        ctx.chunks = (0..6)
            .map(|i| PromptChunk {
                id: format!("doc:{i}"),
                title: "Menu".into(),
                text: format!("passage {i} {}", "kopi ".repeat(400)),
            })
            .collect();
        let full = prompts.render(Locale::Id, &ctx).unwrap().estimated_tokens();
        assert!(full > 6000, "{full}");
        let mut fitted = ctx.clone();
        let rendered = prompts
            .render_within(Locale::Id, &mut fitted, 1500)
            .unwrap();
        assert!(
            rendered.estimated_tokens() <= 1500,
            "{}",
            rendered.estimated_tokens()
        );
        assert!(fitted.history.is_empty());
        assert!(!fitted.chunks.is_empty() && fitted.chunks[0].id == "doc:0");
        // Tiny limit: one passage, cut, still rendered.
        let mut tiny = ctx.clone();
        let rendered = prompts.render_within(Locale::Id, &mut tiny, 400).unwrap();
        assert_eq!(tiny.chunks.len(), 1);
        assert!(
            rendered.estimated_tokens() <= 400,
            "{}",
            rendered.estimated_tokens()
        );
        // Within the limit nothing changes.
        let mut same = sample();
        prompts
            .render_within(Locale::Id, &mut same, 100_000)
            .unwrap();
        assert_eq!(same, sample());
        assert_eq!(estimate_tokens("abcdefgh"), 2);
        assert_eq!(estimate_tokens("a"), 1);
    }

    #[test]
    fn a_limit_below_what_cannot_be_cut_still_ends_with_the_smallest_prompt() {
        let prompts = Prompts::load().unwrap();
        let mut ctx = sample();
        ctx.instructions = "Selalu ramah. ".repeat(400);
        ctx.question = "jam buka? ".repeat(100);
        ctx.chunks[0].text = "Buka 08.00–22.00. ".repeat(100);
        let rendered = prompts.render_within(Locale::Id, &mut ctx, 50).unwrap();
        assert!(rendered.estimated_tokens() > 50);
        assert_eq!(ctx.chunks[0].text.chars().count(), 201);
        assert_eq!(ctx.question.chars().count(), 201);
    }

    #[test]
    fn owner_instructions_are_optional_and_not_escaped() {
        let prompts = Prompts::load().unwrap();
        let mut ctx = sample();
        ctx.instructions = String::new();
        ctx.question = "<b>harga & promo</b>".into();
        let rendered = prompts.render(Locale::En, &ctx).unwrap();
        assert!(
            !rendered
                .system
                .contains("Instructions from the business owner")
        );
        assert!(rendered.user.contains("<b>harga & promo</b>"));
        // Without flows the model is not told about the flow action.
        ctx.flows.clear();
        for locale in [Locale::Id, Locale::En] {
            let rendered = prompts.render(locale, &ctx).unwrap();
            assert!(!rendered.system.contains("flow"), "{}", rendered.system);
        }
    }

    #[test]
    fn a_broken_template_is_reported_with_its_name() {
        let mut tera = tera::Tera::default();
        let err = tera
            .add_raw_template("bad.id.tera", "{% if x %}unclosed")
            .unwrap_err();
        assert!(!chain(&err).is_empty());
    }
}
