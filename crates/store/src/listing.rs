//! The filters of `GET /v1/messages`, turned into one SQL query for either backend.

use switchboard_model::{Channel, Direction, MessageStatus};

/// Filters and page position for listing a tenant's messages, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this direction.
    pub direction: Option<Direction>,
    /// Only this channel.
    pub channel: Option<Channel>,
    /// Only this status.
    pub status: Option<MessageStatus>,
    /// Only from this (normalised) address.
    pub from: Option<String>,
    /// Only to this (normalised) address.
    pub to: Option<String>,
    /// Full-text search over text and subject: every word must appear.
    pub q: Option<String>,
    /// Created at or after this time (microseconds since the epoch).
    pub since: Option<i64>,
    /// Created before this time (microseconds since the epoch).
    pub until: Option<i64>,
    /// Only messages older than this id (the page position).
    pub before_id: Option<String>,
    /// The most rows to return.
    pub limit: u32,
}

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

impl ListQuery {
    /// The words of the full-text filter, when there are any.
    fn text_query(&self) -> Option<&str> {
        self.q.as_deref().filter(|q| !q.trim().is_empty())
    }

    /// Whether the listing filters on text (`q`).
    pub(crate) fn searches_text(&self) -> bool {
        self.text_query().is_some()
    }

    /// The SQL (with `$n` placeholders, which both backends accept) and its values.
    pub(crate) fn to_sql(&self, tenant: &str, postgres: bool) -> (String, Vec<Bind>) {
        let mut sql = String::from("SELECT * FROM messages WHERE tenant = $1");
        let mut binds = vec![Bind::Text(tenant.to_owned())];
        let mut push = |clause: &str, bind: Bind| {
            binds.push(bind);
            sql.push_str(&clause.replace("$?", &format!("${}", binds.len())));
        };
        if let Some(direction) = self.direction {
            push(" AND direction = $?", Bind::Text(direction.as_str().into()));
        }
        if let Some(channel) = self.channel {
            push(" AND channel = $?", Bind::Text(channel.as_str().into()));
        }
        if let Some(status) = self.status {
            push(" AND status = $?", Bind::Text(status.as_str().into()));
        }
        if let Some(from) = &self.from {
            push(" AND from_addr = $?", Bind::Text(from.clone()));
        }
        if let Some(to) = &self.to {
            push(" AND to_addr = $?", Bind::Text(to.clone()));
        }
        if let Some(since) = self.since {
            push(" AND created_at >= $?", Bind::Int(since));
        }
        if let Some(until) = self.until {
            push(" AND created_at < $?", Bind::Int(until));
        }
        if let Some(before) = &self.before_id {
            push(" AND id < $?", Bind::Text(before.clone()));
        }
        if let Some(q) = self.text_query() {
            if postgres {
                push(
                    " AND search @@ plainto_tsquery('simple', $?)",
                    Bind::Text(q.to_owned()),
                );
            } else {
                push(
                    " AND rowid IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH $?)",
                    Bind::Text(fts5_phrases(q)),
                );
            }
        }
        push(
            " ORDER BY id DESC LIMIT $?",
            Bind::Int(i64::from(self.limit)),
        );
        (sql, binds)
    }
}

/// User words as an FTS5 query that means "all of these words", with none of FTS5's
/// operators: each word becomes a quoted phrase.
fn fts5_phrases(q: &str) -> String {
    q.split_whitespace()
        .map(|word| format!("\"{}\"", word.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_words_cannot_inject_fts5_syntax() {
        assert_eq!(fts5_phrases("hello world"), "\"hello\" \"world\"");
        assert_eq!(fts5_phrases("a\"b OR c*"), "\"a\"\"b\" \"OR\" \"c*\"");
    }

    #[test]
    fn placeholders_follow_binds() {
        let query = ListQuery {
            status: Some(MessageStatus::Queued),
            q: Some("hi".into()),
            limit: 10,
            ..ListQuery::default()
        };
        let (sql, binds) = query.to_sql("acme", true);
        assert_eq!(
            sql,
            "SELECT * FROM messages WHERE tenant = $1 AND status = $2 \
             AND search @@ plainto_tsquery('simple', $3) ORDER BY id DESC LIMIT $4"
        );
        assert_eq!(binds.len(), 4);
    }
}
