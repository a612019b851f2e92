//! `CheckImport`: screening the contacts of a CRM sync or list upload against the suppression
//! list before they are (re)imported.
//!
//! A stream's messages are screened one at a time, in order, on a blocking thread; what the
//! stream must remember (its tenant, the addresses seen so far, the verdict format) travels
//! with it from message to message.

use std::ops::Range;
use std::sync::Mutex;

use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};
use tonic::{Status, Streaming};
use tracing::Instrument;

use super::convert;
use super::correction::{proto_suggestion, SuggestionCache};
use super::error::{inbound_error, FieldViolation, ServiceError};
use super::proto as pb;
use super::service::{blocking, SuppressionApi};
use crate::domain::{parse_label, AddressError, AddressRecord, EmailAddress, Tenant};
use crate::fasthash::HashSlots;

/// The response stream of `CheckImport`.
pub(super) type VerdictStream = ReceiverStream<Result<pb::CheckImportResponse, Status>>;

/// How verdicts are written, chosen by the first message of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum VerdictFormat {
    /// A complete verdict per contact.
    #[default]
    Full,
    /// ALLOW verdicts carry only the decision and position.
    CompactAllow,
    /// One decision byte per contact, complete verdicts only for the others.
    Packed,
}

/// What the import guard remembers across the messages of one stream.
#[derive(Default)]
struct ImportStream {
    tenant: Option<Tenant>,
    /// Known-good domains and domain patterns, read once per stream.
    suggestions: SuggestionCache,
    /// 128-bit hashes of the normalized addresses seen so far (collisions are negligible:
    /// about 1 in 10^26 for a million addresses).
    seen: SeenSet,
    format: VerdictFormat,
    batch_index: u64,
}

/// Most bytes of seen-address tables kept for later streams.
const POOLED_SEEN_BYTES: usize = 64 << 20;

/// Seen-address tables of ended streams, kept for the next ones: a table of a million
/// addresses is 16 MiB that a growing stream would otherwise take fresh from the kernel, page by
/// page (perf: 15 % of the server's CPU in page faults and page clearing during back-to-back
/// import streams).
static SEEN_POOL: Mutex<Vec<HashSlots<u128>>> = Mutex::new(Vec::new());

/// An import stream's seen-address table, handed back to [`SEEN_POOL`] when the stream ends.
#[derive(Default)]
struct SeenSet(HashSlots<u128>);

impl SeenSet {
    /// Makes room for `additional` more addresses. When the table must grow, a pooled table of
    /// one to four times the size needed is taken instead, if there is one; it is emptied here,
    /// on the stream's blocking thread, so that what a stream spends emptying stays in
    /// proportion to its own size (a small stream never empties a big table).
    fn make_room(&mut self, additional: usize) {
        let needed = self.0.len() + additional;
        if needed <= self.0.capacity() {
            return;
        }
        let pooled = {
            let mut pool = SEEN_POOL.lock().unwrap_or_else(|e| e.into_inner());
            pool.iter()
                .position(|t| (needed..=needed * 4).contains(&t.capacity()))
                .map(|i| pool.swap_remove(i))
        };
        match pooled {
            Some(mut table) => {
                table.clear();
                for k in self.0.iter() {
                    table.insert(k);
                }
                self.0 = table;
            }
            None => self.0.reserve(additional),
        }
    }
}

impl Drop for SeenSet {
    fn drop(&mut self) {
        let set = std::mem::take(&mut self.0);
        if set.heap_bytes() == 0 {
            return;
        }
        let mut pool = SEEN_POOL.lock().unwrap_or_else(|e| e.into_inner());
        let pooled: usize = pool.iter().map(HashSlots::heap_bytes).sum();
        if pooled + set.heap_bytes() <= POOLED_SEEN_BYTES {
            pool.push(set);
        }
    }
}

/// What a complete verdict is made from, besides the contact's slot and record.
struct Given<'a> {
    /// The address as the caller gave it.
    address: &'a str,
    /// Its normalized form; empty when it is invalid.
    normalized: &'a str,
    /// Given and family name, for contacts with an envelope.
    names: Option<(&'a str, &'a str)>,
}

/// What the first pass found out about a contact. The ranges locate its normalized address in
/// the message's arena of normalized addresses.
enum Slot {
    Invalid(AddressError),
    Duplicate(Range<usize>),
    Check(Range<usize>),
}

/// The lines of `address_lines`: split on "\n", a "\r" before it dropped, a final newline
/// optional.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    (!text.is_empty())
        .then_some(body)
        .into_iter()
        .flat_map(|b| b.split('\n'))
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
}

/// Starts screening an import stream; verdicts flow back as the requests are read.
pub(super) fn check_import(
    api: SuppressionApi,
    mut inbound: Streaming<pb::CheckImportRequest>,
) -> VerdictStream {
    // A small queue: when the client reads slowly, we stop reading its requests.
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(
        async move {
            let mut state = ImportStream::default();
            let mut screened = 0usize;
            while let Some(message) = inbound.next().await {
                let message = match message {
                    Ok(m) => m,
                    Err(status) => {
                        let _ = tx.send(Err(inbound_error(status))).await;
                        return;
                    }
                };
                let api = api.clone();
                let result = blocking(move || {
                    let mut state = state;
                    let response = api.screen(&mut state, message)?;
                    Ok((state, response))
                })
                .await;
                match result {
                    Ok((next_state, (response, n))) => {
                        state = next_state;
                        screened += n;
                        if tx.send(Ok(response)).await.is_err() {
                            return; // the client went away
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                }
            }
            tracing::info!(screened, "import stream screened");
        }
        .in_current_span(),
    );
    ReceiverStream::new(rx)
}

impl SuppressionApi {
    /// Screens one message of an import stream; returns the response and how many contacts
    /// it screened. Runs on a blocking thread.
    fn screen(
        &self,
        state: &mut ImportStream,
        message: pb::CheckImportRequest,
    ) -> Result<(pb::CheckImportResponse, usize), ServiceError> {
        let tenant = convert::tenant(&message.tenant)?;
        match &state.tenant {
            None => {
                state.tenant = Some(tenant.clone());
                state.format = if message.packed_decisions {
                    VerdictFormat::Packed
                } else if message.compact_allow {
                    VerdictFormat::CompactAllow
                } else {
                    VerdictFormat::Full
                };
            }
            Some(t) if *t != tenant => {
                return Err(FieldViolation::new(
                    "tenant",
                    format!("changed from {t} to {tenant} within one stream"),
                )
                .into())
            }
            Some(_) => {}
        }
        let field = if message.address_lines.is_empty() {
            "contacts"
        } else {
            "address_lines"
        };
        // Positions 0.. are the envelope contacts, then the lines of `address_lines`.
        let mut contacts = message.contacts;
        let text = message.address_lines;
        let lines: Vec<&str> = lines(&text).collect();
        let n = contacts.len() + lines.len();
        self.check_batch(field, n)?;

        // First pass: normalize every address into one arena (no allocation per address),
        // and tell first sightings from repeats.
        let mut arena = String::with_capacity(
            text.len() + contacts.iter().map(|c| c.address.len()).sum::<usize>(),
        );
        let normalized: Vec<Result<(Range<usize>, u128), AddressError>> = contacts
            .iter()
            .map(|c| c.address.as_str())
            .chain(lines.iter().copied())
            .map(|raw| {
                let range = EmailAddress::normalize_into(raw, &mut arena)?;
                let hash = xxhash_rust::xxh3::xxh3_128(arena[range.clone()].as_bytes());
                Ok((range, hash))
            })
            .collect();
        let hashes: Vec<u128> = normalized.iter().flatten().map(|&(_, h)| h).collect();
        state.seen.make_room(hashes.len());
        state.seen.0.warm(&hashes);
        let slots: Vec<Slot> = normalized
            .into_iter()
            .map(|n| match n {
                Err(e) => Slot::Invalid(e),
                Ok((range, hash)) if state.seen.0.insert(hash) => Slot::Check(range),
                Ok((range, _)) => Slot::Duplicate(range),
            })
            .collect();
        let (lookup_positions, lookups): (Vec<usize>, Vec<&str>) = slots
            .iter()
            .enumerate()
            .filter_map(|(position, slot)| match slot {
                Slot::Check(range) => Some((position, &arena[range.clone()])),
                _ => None,
            })
            .unzip();
        let mut suppressed = self
            .store
            .suppressed_records(&tenant, &lookups)?
            .into_iter()
            .map(|(k, record)| (lookup_positions[k], record))
            .peekable();

        let packed = state.format == VerdictFormat::Packed;
        let mut decisions = Vec::with_capacity(if packed { n } else { 0 });
        let mut verdicts = Vec::with_capacity(if packed { n / 8 } else { n });
        let mut by_decision = [0u64; 6];
        for (position, slot) in slots.iter().enumerate() {
            let record = suppressed
                .next_if(|(p, _)| *p == position)
                .map(|(_, record)| record);
            let allow = record.is_none() && matches!(slot, Slot::Check(_));
            if allow && state.format != VerdictFormat::Full {
                by_decision[pb::ImportDecision::Allow as usize] += 1;
                if packed {
                    decisions.push(pb::ImportDecision::Allow as u8);
                } else {
                    verdicts.push(pb::ImportVerdict {
                        decision: pb::ImportDecision::Allow as i32,
                        position: position as u32,
                        ..pb::ImportVerdict::default()
                    });
                }
                continue;
            }
            let contact = contacts.get_mut(position).map(std::mem::take);
            let line = position
                .checked_sub(contacts.len())
                .and_then(|i| lines.get(i).copied());
            let given = Given {
                address: contact.as_ref().map_or(line.unwrap_or(""), |c| &c.address),
                normalized: match slot {
                    Slot::Check(r) | Slot::Duplicate(r) => &arena[r.clone()],
                    Slot::Invalid(_) => "",
                },
                names: contact
                    .as_ref()
                    .map(|c| (c.given_name.as_str(), c.family_name.as_str())),
            };
            let mut verdict = self.verdict(&tenant, state, &given, slot, record)?;
            verdict.position = position as u32;
            match contact {
                Some(c) => {
                    verdict.address = c.address;
                    verdict.external_id = c.external_id;
                }
                None => verdict.address = given.address.to_string(),
            }
            by_decision[verdict.decision.clamp(0, 5) as usize] += 1;
            if packed {
                decisions.push(verdict.decision as u8);
            }
            verdicts.push(verdict);
        }
        for (decision, count) in by_decision.into_iter().enumerate().filter(|(_, c)| *c > 0) {
            let name = pb::ImportDecision::try_from(decision as i32)
                .map(|d| d.as_str_name())
                .unwrap_or("IMPORT_DECISION_UNSPECIFIED");
            metrics::counter!("suppressd_import_verdicts_total", "decision" => name)
                .increment(count);
        }
        let batch_index = state.batch_index;
        state.batch_index += 1;
        Ok((
            pb::CheckImportResponse {
                verdicts,
                batch_index,
                decisions,
            },
            n,
        ))
    }

    /// The complete verdict of one contact (its position, address and external id left to the
    /// caller, which can move them out of the request).
    fn verdict(
        &self,
        tenant: &Tenant,
        state: &mut ImportStream,
        given: &Given,
        slot: &Slot,
        record: Option<AddressRecord>,
    ) -> Result<pb::ImportVerdict, ServiceError> {
        let mut verdict = pb::ImportVerdict {
            normalized_address: given.normalized.to_string(),
            ..pb::ImportVerdict::default()
        };
        match slot {
            Slot::Invalid(e) => {
                verdict.decision = pb::ImportDecision::BlockInvalid as i32;
                verdict.detail = e.to_string();
                verdict.suggestion =
                    self.best_suggestion(tenant, given.address, given.names, state)?;
            }
            Slot::Duplicate(_) => {
                verdict.decision = pb::ImportDecision::Duplicate as i32;
                verdict.detail = "address appeared earlier in this import".to_string();
            }
            Slot::Check(_) => match record {
                Some(AddressRecord {
                    suppression: Some(s),
                    replaced_by,
                    needs_enrichment,
                    ..
                }) => {
                    let since = s.since.to_rfc3339();
                    let (reason, address_level) = (s.reason, s.reason.is_address_level());
                    verdict.suppression = Some(Box::new(convert::proto_suppression_owned(s)));
                    if let Some(replacement) = replaced_by {
                        verdict.decision = pb::ImportDecision::Replace as i32;
                        verdict.detail = format!(
                            "suppressed since {since} ({reason:?}); replaced by {replacement}"
                        );
                        verdict.replacement_address = replacement;
                    } else {
                        verdict.decision = pb::ImportDecision::BlockSuppressed as i32;
                        let enrichment = if needs_enrichment {
                            "; needs enrichment"
                        } else {
                            ""
                        };
                        verdict.detail =
                            format!("suppressed since {since} ({reason:?}){enrichment}");
                        if address_level {
                            verdict.suggestion =
                                self.best_suggestion(tenant, given.normalized, given.names, state)?;
                        }
                    }
                }
                _ => verdict.decision = pb::ImportDecision::Allow as i32,
            },
        }
        Ok(verdict)
    }

    /// The best correction of an invalid or suppressed contact, if it reaches the threshold.
    fn best_suggestion(
        &self,
        tenant: &Tenant,
        raw: &str,
        names: Option<(&str, &str)>,
        state: &mut ImportStream,
    ) -> Result<Option<Box<pb::CorrectionSuggestion>>, ServiceError> {
        let name = |n: &str| parse_label(n, false).ok().filter(|n| !n.is_empty());
        let given = names.and_then(|(g, _)| name(g));
        let family = names.and_then(|(_, f)| name(f));
        let found = self.suggestions(
            tenant,
            raw,
            given.as_deref(),
            family.as_deref(),
            false,
            &mut state.suggestions,
        )?;
        Ok(found
            .candidates
            .first()
            .filter(|s| s.confidence >= self.correction_threshold)
            .map(|s| Box::new(proto_suggestion(s))))
    }
}

#[cfg(test)]
mod tests {
    use super::{lines, SeenSet};

    /// Distinct, well-spread 128-bit keys.
    fn keys(range: std::ops::Range<u64>) -> Vec<u128> {
        range
            .map(|i| u128::from(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)) << 64 | u128::from(i))
            .collect()
    }

    #[test]
    fn a_stream_that_takes_a_pooled_table_keeps_what_it_saw_and_nothing_else() {
        let earlier = keys(1..20_001);
        let mut ended = SeenSet::default();
        ended.make_room(earlier.len());
        for &k in &earlier {
            ended.0.insert(k);
        }
        drop(ended);

        let (first, second) = (keys(30_001..35_001), keys(40_001..45_001));
        let mut stream = SeenSet::default();
        stream.make_room(first.len());
        for &k in &first {
            assert!(stream.0.insert(k));
        }
        // Too small for the pooled table until the stream needs a quarter of it.
        assert!(stream.0.capacity() < earlier.len());
        stream.make_room(second.len());
        assert!(
            stream.0.capacity() >= earlier.len(),
            "the pooled table was not taken"
        );
        assert!(first.iter().all(|&k| stream.0.contains(k)));
        assert!(earlier.iter().all(|&k| !stream.0.contains(k)));
    }

    #[test]
    fn address_lines_split_on_newlines_with_an_optional_final_one() {
        fn all(s: &str) -> Vec<&str> {
            lines(s).collect()
        }
        assert!(all("").is_empty());
        assert_eq!(all("a@x.com"), ["a@x.com"]);
        assert_eq!(all("a@x.com\n"), ["a@x.com"]);
        assert_eq!(all("a@x.com\r\nb@y.org\r\n"), ["a@x.com", "b@y.org"]);
        assert_eq!(all("a@x.com\n\nb@y.org"), ["a@x.com", "", "b@y.org"]);
        assert_eq!(all("\n"), [""]);
    }
}
