//! Statements whose results nobody reads, sent together: one round trip on SQLite.
//!
//! sqlx runs each SQLite connection on its own thread, and every statement is a hop to that
//! thread and back. On the single writer those hops are the serial part of a group commit:
//! between two statements the writer waits until the async side is scheduled again, which on
//! a busy machine costs far more than the statements. A [`Script`] collects statements and
//! their parameters and runs them as one multi-statement query on SQLite (sqlx binds `?`
//! parameters across the statements in order), so a group commit's trailing writes cost one
//! hop. Postgres does not take several statements with parameters in one query: there each
//! statement runs on its own, in the order it was added, as before.

use sqlx::any::AnyArguments;
use sqlx::{Any, Arguments, Encode, Type};

use super::{Dialect, StoreError, bind_marks};

/// Statements to run in order inside a transaction, their results discarded.
pub(crate) struct Script<'q> {
    dialect: Dialect,
    /// Postgres: the statements already complete, each with its own parameters.
    done: Vec<(String, AnyArguments<'q>)>,
    /// SQLite: every statement so far; Postgres: the one being bound.
    sql: String,
    args: AnyArguments<'q>,
}

impl<'q> Script<'q> {
    pub(crate) fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            done: Vec::new(),
            sql: String::new(),
            args: AnyArguments::default(),
        }
    }

    /// Starts the next statement; its parameters are written `?` and bound in order with
    /// [`Script::bind`].
    pub(crate) fn statement(&mut self, sql: &str) {
        match self.dialect {
            Dialect::Sqlite => {
                if !self.sql.is_empty() {
                    self.sql.push_str(";\n");
                }
                self.sql.push_str(sql);
            }
            Dialect::Postgres => {
                self.finish_statement();
                self.sql = bind_marks(Dialect::Postgres, sql);
            }
        }
    }

    /// Binds the next parameter of the current statement.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] when the value cannot be encoded.
    pub(crate) fn bind<T>(&mut self, value: T) -> Result<&mut Self, StoreError>
    where
        T: 'q + Encode<'q, Any> + Type<Any>,
    {
        self.args
            .add(value)
            .map_err(|e| StoreError::Corrupt(format!("cannot bind a parameter: {e}")))?;
        Ok(self)
    }

    fn finish_statement(&mut self) {
        if !self.sql.is_empty() {
            let sql = std::mem::take(&mut self.sql);
            let args = std::mem::take(&mut self.args);
            self.done.push((sql, args));
        }
    }

    /// Runs the statements in order on `conn` (a transaction, through `&mut **tx`).
    ///
    /// # Errors
    /// The first statement's error; the caller rolls the transaction back.
    pub(crate) async fn run(mut self, conn: &mut sqlx::AnyConnection) -> Result<(), StoreError> {
        self.finish_statement();
        for (sql, args) in self.done {
            // The script's text is rarely the same twice (row counts vary): not cached.
            sqlx::query_with::<Any, AnyArguments<'_>>(&sql, args)
                .persistent(self.dialect == Dialect::Postgres)
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
    }
}
