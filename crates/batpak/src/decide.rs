//! Gates against the store: decide-and-commit over projected state, proposals,
//! recorded denials and audited bypasses. The gates themselves are in `gate.rs`.

use crate::coordinate::{Coordinate, GATE_ENTITY};
use crate::error::{Error, Result};
use crate::event::Batch;
use crate::event::EventPayload;
use crate::gate::{
    trace_entries, DecideOptions, Decision, GateOutcome, GateSet, Proposal, RawDecision,
    RecordedBypass, RecordedDenial,
};
use crate::options::{AppendOptions, ExpectedVersion};
use crate::projection::{Freshness, Projection};
use crate::receipt::AppendReceipt;
use crate::store::Store;

impl Store {
    /// Decides and commits without a check-then-act window: projects `P` over the
    /// coordinate's entity, lets `propose` turn that state into the gate context and
    /// the event, runs `gates`, and appends with the expected version the state was
    /// built from. When another writer got there first (a version conflict) it reloads
    /// and decides again, up to `options.attempts` times, then returns the conflict.
    /// With `options.record_denials`, a refusal is recorded on the entity's chain.
    pub fn decide<P, E, Ctx>(
        &self,
        coord: &Coordinate,
        gates: &GateSet<Ctx>,
        options: DecideOptions,
        mut propose: impl FnMut(Option<&P>) -> (Ctx, E),
    ) -> Result<Decision<E>>
    where
        P: Projection,
        E: EventPayload,
    {
        // Deciders on one entity take turns: under `SyncPolicy::Always` another
        // decider's event is written before it is visible, and deciding against the
        // visible state in parallel would conflict again and again.
        let _turn = self.decide_turn(coord.entity());
        let mut tries = 0;
        loop {
            tries += 1;
            let (state, through) =
                self.project_through::<P>(coord.entity(), Freshness::Consistent)?;
            let (context, payload) = propose(state.as_ref());
            let trace = gates.trace(&context, true);
            let receipt = match GateSet::<Ctx>::conclude(trace.clone()) {
                Ok(receipt) => receipt,
                Err(mut denials) => {
                    if options.record_denials {
                        self.record_denial(coord, &payload, trace)?;
                    }
                    return Ok(Decision::Denied(denials.remove(0)));
                }
            };
            let expected = match self.version_at(through) {
                Some(v) => ExpectedVersion::Exact(v),
                None => ExpectedVersion::NoStream,
            };
            match self.append_with(coord, &payload, AppendOptions::expect(expected)) {
                Ok(appended) => {
                    return Ok(Decision::Committed {
                        receipt: appended,
                        gates: receipt,
                        payload,
                    })
                }
                Err(Error::VersionConflict { .. }) if tries < options.attempts => {
                    // The winner's event may be written but not yet visible (its
                    // fsync is in flight): wait for it, or the reload sees the same
                    // state and conflicts again.
                    self.sync()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs `gates` over `context` and, if they pass, appends the proposal. A denial
    /// appends nothing of the proposal; with `record_denial` it is recorded on the
    /// entity's chain as a store-owned `RecordedDenial` (the trace, the proposed kind
    /// and the digest of the proposed payload), verifiable like any event.
    pub fn propose<T: EventPayload, Ctx>(
        &self,
        proposal: Proposal<T>,
        gates: &GateSet<Ctx>,
        context: &Ctx,
    ) -> Result<Decision<T>> {
        let trace = gates.trace(context, true);
        match GateSet::<Ctx>::conclude(trace.clone()).map_err(|mut d| d.remove(0)) {
            Ok(receipt) => {
                let appended =
                    self.append_with(&proposal.coordinate, &proposal.payload, proposal.options)?;
                Ok(Decision::Committed {
                    receipt: appended,
                    gates: receipt,
                    payload: proposal.payload,
                })
            }
            Err(denial) => {
                if proposal.record_denial {
                    self.record_denial(&proposal.coordinate, &proposal.payload, trace)?;
                }
                Ok(Decision::Denied(denial))
            }
        }
    }

    /// Appends a `RecordedDenial` of `payload` at `coord`: the trace, the proposed kind
    /// and the digest of the proposed payload.
    fn record_denial<T: EventPayload>(
        &self,
        coord: &Coordinate,
        payload: &T,
        trace: Vec<(String, GateOutcome)>,
    ) -> Result<AppendReceipt> {
        let bytes = payload.encode()?;
        self.record_denial_of(coord, T::KIND, &bytes, trace)
    }

    fn record_denial_of(
        &self,
        coord: &Coordinate,
        kind: crate::EventKind,
        bytes: &[u8],
        trace: Vec<(String, GateOutcome)>,
    ) -> Result<AppendReceipt> {
        let record = RecordedDenial {
            entity: coord.entity().to_string(),
            proposed_kind: kind.bits(),
            payload_digest: blake3::hash(bytes).to_hex().to_string(),
            trace: trace_entries(trace),
        };
        let mut batch = Batch::new();
        let gate_log = Coordinate::new(GATE_ENTITY, coord.scope())?;
        batch.push_system(&gate_log, &record, AppendOptions::default())?;
        self.append_batch(&batch)?.pop().ok_or(Error::EmptyBatch)
    }

    /// Evaluates `gates` over `context` for an event whose payload is already encoded
    /// (a server's append, say) and appends it only when every gate permits. A denial
    /// is always recorded as evidence (a `RecordedDenial` store record in the gate log
    /// of the event's scope, naming the payload's blake3) and its receipt returned
    /// with it. The gates see only `context`: a decision that depends on the store's
    /// state belongs in [`decide`](Self::decide), which retries on a conflict.
    pub fn propose_raw<Ctx>(
        &self,
        coord: &Coordinate,
        kind: crate::EventKind,
        payload: crate::RawPayload<'_>,
        options: AppendOptions,
        gates: &GateSet<Ctx>,
        context: &Ctx,
    ) -> Result<RawDecision> {
        let trace = gates.trace(context, true);
        match GateSet::<Ctx>::conclude(trace.clone()) {
            Ok(passed) => {
                let receipt = self.append_raw(coord, kind, payload, options)?;
                Ok(RawDecision::Committed {
                    receipt,
                    gates: passed,
                })
            }
            Err(mut denials) => {
                let recorded = self.record_denial_of(coord, kind, payload.bytes, trace)?;
                Ok(RawDecision::Denied {
                    denial: denials.remove(0),
                    recorded,
                })
            }
        }
    }

    /// Commits a proposal without its gates, on purpose: the event and a
    /// `RecordedBypass` (reason, approver) naming it as its cause are appended in one
    /// atomic batch, so an audit finds every bypass by kind (`BYPASS_KIND`).
    /// Returns the event's receipt.
    pub fn bypass<T: EventPayload>(
        &self,
        proposal: Proposal<T>,
        reason: impl Into<String>,
        approver: Option<String>,
    ) -> Result<AppendReceipt> {
        let mut batch = Batch::new();
        let item = batch.push(&proposal.coordinate, &proposal.payload, proposal.options)?;
        let audit = RecordedBypass {
            reason: reason.into(),
            approver,
        };
        batch.push_system(
            &Coordinate::new(GATE_ENTITY, proposal.coordinate.scope())?,
            &audit,
            AppendOptions::default().caused_by_item(item),
        )?;
        let mut receipts = self.append_batch(&batch)?;
        receipts.truncate(1);
        receipts.pop().ok_or(Error::EmptyBatch)
    }
}
