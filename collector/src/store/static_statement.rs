//! A prepared statement without result rows whose texts are bound without a copy (`SQLITE_STATIC`), for the
//! statements run once per event: the events INSERT and the stats visit UPDATE. rusqlite binds every text with
//! `SQLITE_TRANSIENT`, so SQLite copied each event's few hundred bytes once more before storing them (the copies and
//! their frees were ~6 % of batched ingest CPU), and each visit's step list likewise.
//!
//! Safe to use: [`StaticStatement::execute`] binds, steps and clears the bindings before it returns, so SQLite never
//! holds a pointer into a caller's text past the call; the statement is finalized on drop, which its owners do before
//! the connection closes ([`super::sqlite::SqliteStore`] by field order, `stats::record` by scope).

use rusqlite::{ffi, Connection};
use std::ffi::{c_int, CStr};
use std::ptr::NonNull;

/// One parameter value.
#[derive(Clone, Copy)]
pub(super) enum Param<'a> {
    Null,
    Int(i64),
    Text(&'a str),
}

impl<'a> From<Option<&'a str>> for Param<'a> {
    fn from(text: Option<&'a str>) -> Param<'a> {
        text.map_or(Param::Null, Param::Text)
    }
}

impl From<Option<i64>> for Param<'_> {
    fn from(value: Option<i64>) -> Self {
        value.map_or(Param::Null, Param::Int)
    }
}

impl<'a> From<&'a Option<String>> for Param<'a> {
    fn from(text: &'a Option<String>) -> Param<'a> {
        text.as_deref().into()
    }
}

pub(super) struct StaticStatement {
    stmt: NonNull<ffi::sqlite3_stmt>,
    db: NonNull<ffi::sqlite3>,
    /// How many parameters the statement has: [`StaticStatement::execute`] takes exactly these (an unbound one would
    /// silently be NULL).
    parameters: usize,
}

// SAFETY: like rusqlite's `Connection`, which it travels with: SQLite is built thread-safe, and `&mut self` keeps
// every use on one thread at a time.
unsafe impl Send for StaticStatement {}

impl StaticStatement {
    /// Prepares `sql` on `conn`. The statement must be dropped before `conn` is closed.
    pub(super) fn prepare(conn: &Connection, sql: &str) -> rusqlite::Result<StaticStatement> {
        // SAFETY: the handle is the live connection's; prepare only reads `sql` for its given length.
        unsafe {
            let db = NonNull::new(conn.handle()).expect("an open connection has a handle");
            let mut stmt = std::ptr::null_mut();
            let len = c_int::try_from(sql.len()).expect("a short statement");
            let rc = ffi::sqlite3_prepare_v3(db.as_ptr(), sql.as_ptr().cast(), len, ffi::SQLITE_PREPARE_PERSISTENT, &mut stmt, std::ptr::null_mut());
            if rc != ffi::SQLITE_OK {
                return Err(error(db, rc));
            }
            let stmt = NonNull::new(stmt).ok_or_else(|| rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_MISUSE), Some("empty statement".into())))?;
            let parameters = usize::try_from(ffi::sqlite3_bind_parameter_count(stmt.as_ptr())).unwrap_or(0);
            Ok(StaticStatement { stmt, db, parameters })
        }
    }

    /// Binds `params` to ?1, ?2, … in order, runs the statement once and clears the bindings. A NULL is not bound:
    /// every parameter is NULL already, in a new statement and after each clear (an event binds a dozen NULLs).
    pub(super) fn execute(&mut self, params: &[Param<'_>]) -> rusqlite::Result<()> {
        if params.len() != self.parameters {
            return Err(rusqlite::Error::InvalidParameterCount(params.len(), self.parameters));
        }
        let stmt = self.stmt.as_ptr();
        // SAFETY: `stmt` is a live prepared statement of `db`, used from one thread (`&mut self`). Texts are bound
        // SQLITE_STATIC: SQLite reads them only until the bindings are cleared, which happens before this returns.
        unsafe {
            let mut rc = ffi::SQLITE_OK;
            for (i, param) in params.iter().enumerate() {
                let index = i as c_int + 1;
                rc = match *param {
                    Param::Null => continue,
                    Param::Int(value) => ffi::sqlite3_bind_int64(stmt, index, value),
                    Param::Text(text) => ffi::sqlite3_bind_text64(stmt, index, text.as_ptr().cast(), text.len() as u64, ffi::SQLITE_STATIC(), ffi::SQLITE_UTF8 as u8),
                };
                if rc != ffi::SQLITE_OK {
                    break;
                }
            }
            if rc == ffi::SQLITE_OK {
                rc = match ffi::sqlite3_step(stmt) {
                    ffi::SQLITE_DONE => ffi::SQLITE_OK,
                    ffi::SQLITE_ROW => ffi::SQLITE_MISUSE,
                    failed => failed,
                };
            }
            // Read before the reset, which may replace it.
            let result = if rc == ffi::SQLITE_OK { Ok(()) } else { Err(error(self.db, rc)) };
            ffi::sqlite3_reset(stmt);
            ffi::sqlite3_clear_bindings(stmt);
            result
        }
    }
}

impl Drop for StaticStatement {
    fn drop(&mut self) {
        // SAFETY: the statement is live and never used again.
        unsafe {
            ffi::sqlite3_finalize(self.stmt.as_ptr());
        }
    }
}

/// The connection's error for `rc`, with SQLite's message.
unsafe fn error(db: NonNull<ffi::sqlite3>, rc: c_int) -> rusqlite::Error {
    // SAFETY (caller): `db` is a live connection; its message stays valid until the next call on it.
    let message = unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(db.as_ptr())) }.to_string_lossy().into_owned();
    rusqlite::Error::SqliteFailure(ffi::Error::new(rc), Some(message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_texts_integers_and_nulls_and_reports_errors() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (a TEXT, b INTEGER, c TEXT NOT NULL)").unwrap();
        let mut insert = StaticStatement::prepare(&conn, "INSERT INTO t (a, b, c) VALUES (?1, ?2, ?3)").unwrap();
        for i in 0..3 {
            let text = format!("row {i} — ünïcode");
            insert.execute(&[Param::Text(&text), Param::Int(i), Param::Text("c")]).unwrap();
            // The text is gone before the next row; SQLite must have stored its own copy of the row.
            drop(text);
        }
        insert.execute(&[Param::Null, Param::Null, Param::Text("")]).unwrap();
        let failed = insert.execute(&[Param::Null, Param::Null, Param::Null]).unwrap_err();
        assert!(failed.to_string().contains("NOT NULL"), "{failed}");
        assert!(matches!(insert.execute(&[Param::Null, Param::Null]), Err(rusqlite::Error::InvalidParameterCount(2, 3))));
        // A failed run leaves the statement usable.
        insert.execute(&[Param::Text("after"), Param::Int(9), Param::Text("c")]).unwrap();
        let rows: Vec<(Option<String>, Option<i64>, String)> =
            conn.prepare("SELECT a, b, c FROM t ORDER BY rowid").unwrap().query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[1], (Some("row 1 — ünïcode".into()), Some(1), "c".into()));
        assert_eq!(rows[3], (None, None, String::new()));
        assert_eq!(rows[4], (Some("after".into()), Some(9), "c".into()));
        drop(insert);
    }
}
