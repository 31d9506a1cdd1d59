//! Questions the bot could not answer, grouped by similarity for the owner: the same
//! question asked in different words is one line with a count. Pure.

use std::collections::BTreeSet;

/// One unanswered question as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// Row id.
    pub id: i64,
    /// The customer's words.
    pub query: String,
    /// Where it was asked.
    pub conversation_id: String,
    /// When (Unix ms).
    pub at_ms: i64,
}

/// Similar questions together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The id of its first question (stable while the group is open).
    pub id: i64,
    /// The latest wording.
    pub question: String,
    /// How many times it was asked.
    pub count: usize,
    /// When it was last asked (Unix ms).
    pub last_seen_ms: i64,
    /// Conversations it was asked in, latest first, each once.
    pub conversation_ids: Vec<String>,
    /// Ids of all its questions.
    pub member_ids: Vec<i64>,
}

fn word_set(text: &str) -> BTreeSet<String> {
    crate::excerpt::words(text).into_iter().collect()
}

/// Whether two questions ask the same: most of their meaningful words are shared
/// (Jaccard ≥ 0.5), or one's words (two at least) are all in the other.
pub fn similar(a: &str, b: &str) -> bool {
    let (a, b) = (word_set(a), word_set(b));
    if a.is_empty() || b.is_empty() {
        return a == b;
    }
    let shared = a.intersection(&b).count();
    let union = a.union(&b).count();
    shared * 2 >= union || (shared >= 2 && (shared == a.len() || shared == b.len()))
}

/// Groups `asked` (any order): each question joins the first group whose first question
/// it is similar to. Groups come most asked first, then most recent.
pub fn group(asked: &[Asked]) -> Vec<Group> {
    let mut sorted: Vec<&Asked> = asked.iter().collect();
    sorted.sort_by_key(|a| a.id);
    // Each group with the wording of its first question, which later ones are compared to.
    let mut groups: Vec<(String, Group)> = Vec::new();
    for a in sorted {
        let found = groups
            .iter_mut()
            .find(|(first, _)| similar(first, &a.query));
        match found {
            Some((_, g)) => {
                g.count += 1;
                g.member_ids.push(a.id);
                if a.at_ms >= g.last_seen_ms {
                    g.last_seen_ms = a.at_ms;
                    g.question.clone_from(&a.query);
                }
                g.conversation_ids.retain(|c| *c != a.conversation_id);
                g.conversation_ids.insert(0, a.conversation_id.clone());
            }
            None => groups.push((
                a.query.clone(),
                Group {
                    id: a.id,
                    question: a.query.clone(),
                    count: 1,
                    last_seen_ms: a.at_ms,
                    conversation_ids: vec![a.conversation_id.clone()],
                    member_ids: vec![a.id],
                },
            )),
        }
    }
    let mut out: Vec<Group> = groups.into_iter().map(|(_, g)| g).collect();
    out.sort_by(|x, y| {
        y.count
            .cmp(&x.count)
            .then(y.last_seen_ms.cmp(&x.last_seen_ms))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(id: i64, query: &str, conversation: &str) -> Asked {
        Asked {
            id,
            query: query.to_owned(),
            conversation_id: conversation.to_owned(),
            at_ms: id * 1000,
        }
    }

    #[test]
    fn paraphrases_group_and_other_questions_do_not() {
        assert!(similar(
            "ada layanan antar jemput bandara?",
            "bisa antar jemput ke bandara?"
        ));
        assert!(similar(
            "Apakah ada parkir motor?",
            "parkir motor ada ga kak"
        ));
        assert!(!similar("ada parkir motor?", "harga kopi susu berapa?"));
        let groups = group(&[
            asked(1, "ada parkir motor?", "c1"),
            asked(2, "harga kopi susu berapa?", "c2"),
            asked(3, "parkir motor ada ga kak", "c3"),
            asked(4, "Ada parkir motor?", "c1"),
        ]);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].id, 1);
        assert_eq!(groups[0].count, 3);
        assert_eq!(groups[0].question, "Ada parkir motor?");
        assert_eq!(groups[0].last_seen_ms, 4000);
        assert_eq!(groups[0].conversation_ids, ["c1", "c3"]);
        assert_eq!(groups[0].member_ids, [1, 3, 4]);
        assert_eq!(groups[1].count, 1);
    }
}
