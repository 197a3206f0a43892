//! The backend side of `llmops migrate` (see `crate::copy`): a table read a page at a
//! time in key order, and rows written inside one transaction.

use async_trait::async_trait;
use sqlx::query_builder::Separated;
use sqlx::{QueryBuilder, Row, Transaction};

use super::{Db, Store};
use crate::copy::tables::{Kind, Table};
use crate::copy::{CopyEnd, CopyTarget, Value};

/// Rows per INSERT: at most 11 columns, well under either database's parameter limit.
const ROWS_PER_STATEMENT: usize = 500;

fn push_value<'q>(list: &mut Separated<'_, 'q, Db, &'static str>, value: &Value) {
    match value.clone() {
        Value::Text(v) => list.push_bind(v),
        Value::Int(v) => list.push_bind(v),
        Value::Real(v) => list.push_bind(v),
        Value::Bool(v) => list.push_bind(v),
    };
}

fn read_value(
    row: &<Db as sqlx::Database>::Row,
    index: usize,
    kind: Kind,
) -> Result<Value, sqlx::Error> {
    Ok(match kind {
        Kind::Text => Value::Text(row.try_get(index)?),
        Kind::Int => Value::Int(row.try_get(index)?),
        Kind::Real => Value::Real(row.try_get(index)?),
        Kind::Bool => Value::Bool(row.try_get(index)?),
    })
}

fn column_list(table: &Table) -> String {
    table
        .columns
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait]
impl CopyEnd for Store {
    async fn read_page(
        &self,
        table: &Table,
        after: Option<&[Value]>,
        limit: usize,
    ) -> Result<Vec<Vec<Value>>, sqlx::Error> {
        let key = table.key.join(", ");
        let mut query =
            QueryBuilder::<Db>::new(format!("SELECT {} FROM {}", column_list(table), table.name));
        if let Some(after) = after {
            query.push(format!(" WHERE ({key}) > ("));
            let mut list = query.separated(", ");
            for value in after {
                push_value(&mut list, value);
            }
            query.push(")");
        }
        query.push(format!(" ORDER BY {key} LIMIT "));
        query.push_bind(limit as i64);
        let rows = query.build().fetch_all(&self.reader).await?;
        rows.iter()
            .map(|row| {
                (0..table.columns.len())
                    .map(|index| read_value(row, index, table.columns[index].1))
                    .collect()
            })
            .collect()
    }

    async fn count(&self, table: &Table) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {}", table.name))
            .fetch_one(&self.reader)
            .await
    }

    async fn begin_copy(&self) -> Result<Box<dyn CopyTarget>, sqlx::Error> {
        Ok(Box::new(Writer {
            tx: self.writer.begin().await?,
        }))
    }
}

/// Rows written into a target inside one transaction: a failed copy leaves nothing.
struct Writer {
    tx: Transaction<'static, Db>,
}

#[async_trait]
impl CopyTarget for Writer {
    async fn clear(&mut self, table: &Table) -> Result<(), sqlx::Error> {
        sqlx::query(&format!("DELETE FROM {}", table.name))
            .execute(&mut *self.tx)
            .await
            .map(drop)
    }

    async fn write(&mut self, table: &Table, rows: &[Vec<Value>]) -> Result<(), sqlx::Error> {
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Db>::new(format!(
                "INSERT INTO {} ({}) ",
                table.name,
                column_list(table)
            ));
            insert.push_values(chunk, |mut list, row| {
                for value in row {
                    push_value(&mut list, value);
                }
            });
            insert.build().execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<(), sqlx::Error> {
        super::after_copy(&mut self.tx).await?;
        self.tx.commit().await
    }
}
