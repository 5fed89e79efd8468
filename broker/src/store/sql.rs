//! The two databases the broker store runs on, behind one small interface:
//! statements with `$1`-style parameters, values that are integers, text
//! or NULL, rows read back the same way. The store's queries are written
//! once against [`Db`]; `Sqlite` and `Postgres` only carry them.
//!
//! The SQL the store writes is the common part of both dialects (`ON
//! CONFLICT`, `RETURNING`, `$n` placeholders, which SQLite reads as `?n`
//! once rewritten here); only the migrations differ per database.

use postgres::types::{to_sql_checked, IsNull, ToSql, Type};

/// A parameter or a column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Null,
    Int(i64),
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        // Times and ids the store keeps fit an i64 by far; saturate rather
        // than wrap on anything that would not.
        Self::Int(i64::try_from(v).unwrap_or(i64::MAX))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// One row as read: its values by column position.
#[derive(Debug, Clone)]
pub struct Row(pub Vec<Value>);

impl Row {
    pub fn int(&self, i: usize) -> anyhow::Result<i64> {
        self.opt_int(i)?
            .ok_or_else(|| anyhow::anyhow!("column {i} is NULL, expected an integer"))
    }

    pub fn opt_int(&self, i: usize) -> anyhow::Result<Option<i64>> {
        match self.0.get(i) {
            Some(Value::Int(v)) => Ok(Some(*v)),
            Some(Value::Null) => Ok(None),
            other => anyhow::bail!("column {i} is {other:?}, expected an integer"),
        }
    }

    pub fn text(&self, i: usize) -> anyhow::Result<String> {
        self.opt_text(i)?
            .ok_or_else(|| anyhow::anyhow!("column {i} is NULL, expected text"))
    }

    pub fn opt_text(&self, i: usize) -> anyhow::Result<Option<String>> {
        match self.0.get(i) {
            Some(Value::Text(v)) => Ok(Some(v.clone())),
            Some(Value::Null) => Ok(None),
            other => anyhow::bail!("column {i} is {other:?}, expected text"),
        }
    }
}

/// A connection to the store's database.
pub trait Db: Send {
    /// Runs one statement; the number of rows it changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<u64>;
    /// Runs one query; every row it returned.
    fn query(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<Vec<Row>>;
    /// Runs statements without parameters (`BEGIN`, `COMMIT`, migrations).
    fn batch(&mut self, sql: &str) -> anyhow::Result<()>;
    /// Tells the other processes sharing the store that `topic` changed,
    /// when this transaction commits (PostgreSQL's `NOTIFY`, on a channel
    /// named after the store's schema). SQLite has no such thing: its
    /// brokers share one host and poll the file.
    fn announce(&mut self, topic: &str) -> anyhow::Result<()>;
    /// Begins a transaction that will write what it reads; the clause
    /// that locks the rows a `SELECT` reads (PostgreSQL's ` FOR UPDATE`;
    /// SQLite locks the whole file at `BEGIN IMMEDIATE` instead).
    fn begin_locking(&mut self) -> anyhow::Result<&'static str>;

    fn query_opt(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }
}

/// SQLite, through rusqlite.
pub struct Sqlite(pub rusqlite::Connection);

/// `$1` → `?1`: SQLite reads `$NAME` as a named parameter, bound by
/// order of first appearance, not by its number.
fn sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

fn to_sqlite(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Text(t) => rusqlite::types::Value::Text(t.clone()),
    }
}

impl Db for Sqlite {
    fn execute(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<u64> {
        let mut stmt = self.0.prepare_cached(&sqlite_placeholders(sql))?;
        let n = stmt.execute(rusqlite::params_from_iter(params.iter().map(to_sqlite)))?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<Vec<Row>> {
        let mut stmt = self.0.prepare_cached(&sqlite_placeholders(sql))?;
        let columns = stmt.column_count();
        let mut rows = stmt.query(rusqlite::params_from_iter(params.iter().map(to_sqlite)))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let mut values = Vec::with_capacity(columns);
            for i in 0..columns {
                use rusqlite::types::ValueRef;
                values.push(match row.get_ref(i)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Text(t) => Value::Text(String::from_utf8(t.to_vec())?),
                    other => anyhow::bail!("column {i} holds {:?}", other.data_type()),
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> anyhow::Result<()> {
        Ok(self.0.execute_batch(sql)?)
    }

    fn announce(&mut self, _topic: &str) -> anyhow::Result<()> {
        Ok(())
    }

    fn begin_locking(&mut self) -> anyhow::Result<&'static str> {
        self.0.execute_batch("BEGIN IMMEDIATE")?;
        Ok("")
    }
}

/// PostgreSQL, through the blocking `postgres` client.
pub struct Postgres(pub postgres::Client);

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Self::Null => Ok(IsNull::Yes),
            Self::Int(i) => i.to_sql(ty, out),
            Self::Text(t) => t.to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        <i64 as ToSql>::accepts(ty) || <String as ToSql>::accepts(ty)
    }

    to_sql_checked!();
}

fn params_of(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Db for Postgres {
    fn execute(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<u64> {
        Ok(self.0.execute(sql, &params_of(params))?)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> anyhow::Result<Vec<Row>> {
        let rows = self.0.query(sql, &params_of(params))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = Vec::with_capacity(row.len());
            for (i, column) in row.columns().iter().enumerate() {
                let ty = column.type_();
                values.push(if *ty == Type::INT8 {
                    row.try_get::<_, Option<i64>>(i)?
                        .map_or(Value::Null, Value::Int)
                } else if *ty == Type::INT4 {
                    row.try_get::<_, Option<i32>>(i)?
                        .map_or(Value::Null, |v| Value::Int(v.into()))
                } else if *ty == Type::TEXT || *ty == Type::VARCHAR {
                    row.try_get::<_, Option<String>>(i)?
                        .map_or(Value::Null, Value::Text)
                } else {
                    anyhow::bail!("column {} is of type {ty}", column.name());
                });
            }
            out.push(Row(values));
        }
        Ok(out)
    }

    fn batch(&mut self, sql: &str) -> anyhow::Result<()> {
        Ok(self.0.batch_execute(sql)?)
    }

    fn announce(&mut self, topic: &str) -> anyhow::Result<()> {
        // The connection's search_path is the store's schema.
        self.0
            .execute("SELECT pg_notify(current_schema(), $1)", &[&topic])?;
        Ok(())
    }

    fn begin_locking(&mut self) -> anyhow::Result<&'static str> {
        // Bounded both ways: a broker waits at most 5 s for another's
        // lock (then the change fails, and says the store is busy), and a
        // lock whose holder went silent (its host gone) is dropped by the
        // server after 30 s rather than at TCP's own timeout.
        self.0.batch_execute(
            "BEGIN; SET LOCAL lock_timeout = '5s'; SET LOCAL idle_in_transaction_session_timeout = '30s'",
        )?;
        Ok(" FOR UPDATE")
    }
}

#[cfg(test)]
mod tests {
    use super::sqlite_placeholders;

    #[test]
    fn numbered_parameters_become_sqlites() {
        assert_eq!(
            sqlite_placeholders("SELECT a FROM t WHERE b = $2 AND c = $10 AND d = '$'"),
            "SELECT a FROM t WHERE b = ?2 AND c = ?10 AND d = '$'"
        );
    }
}
