//! Statements of one transaction sent together: tokio-postgres writes a query to the connection
//! when its future is first polled and matches the answers in order, so statements whose
//! parameters do not depend on an earlier one's answer cost one round trip together instead of
//! one each. They run in the order they were pushed, as if awaited one after the other; a
//! failed one aborts the transaction, so the ones after it fail too and the group with them.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use super::super::sql_error;
use crate::store::StoreError;

/// A parameter of a pipelined statement.
pub(super) type Param<'p> = Box<dyn ToSql + Sync + Send + 'p>;

/// One statement: what it does (for its error), its text and its parameters.
struct Pushed<'p> {
    context: &'static str,
    sql: &'static str,
    params: Vec<Param<'p>>,
}

/// Statements gathered to be sent together.
#[derive(Default)]
pub(super) struct Pipeline<'p> {
    statements: Vec<Pushed<'p>>,
}

impl<'p> Pipeline<'p> {
    /// Adds a statement; its rows are at the same position in [`Pipeline::run`]'s answer.
    pub(super) fn push(
        &mut self,
        context: &'static str,
        sql: &'static str,
        params: Vec<Param<'p>>,
    ) {
        self.statements.push(Pushed {
            context,
            sql,
            params,
        });
    }

    /// Statements pushed so far.
    pub(super) fn len(&self) -> usize {
        self.statements.len()
    }

    /// Sends every statement (each prepared once per connection, then taken from its cache)
    /// and returns their rows in order, or the first error.
    pub(super) async fn run(self, tx: &Transaction<'_>) -> Result<Vec<Vec<Row>>, StoreError> {
        let mut prepared = Vec::with_capacity(self.statements.len());
        for s in &self.statements {
            prepared.push(
                tx.prepare_cached(s.sql)
                    .await
                    .map_err(sql_error(s.context))?,
            );
        }
        let params: Vec<Vec<&(dyn ToSql + Sync)>> = self
            .statements
            .iter()
            .map(|s| {
                s.params
                    .iter()
                    .map(|p| p.as_ref() as &(dyn ToSql + Sync))
                    .collect()
            })
            .collect();
        let queries = prepared
            .iter()
            .zip(&params)
            .zip(&self.statements)
            .map(|((statement, params), s)| async move {
                tx.query(statement, params)
                    .await
                    .map_err(sql_error(s.context))
            })
            .collect();
        in_order(queries).await.into_iter().collect()
    }
}

/// Awaits every future, polling them in the order given (so that each query is written to the
/// connection in that order), and returns their outputs in that order.
async fn in_order<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *output = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
