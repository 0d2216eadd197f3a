//! Gates: caller-defined policy predicates evaluated before a commit.
//!
//! A [`Gate`] is a named, pure predicate over a context the caller defines. A
//! [`GateSet`] runs gates in order: [`GateSet::evaluate`] stops at the first denial,
//! [`GateSet::evaluate_all`] collects every denial. Only a passed evaluation produces
//! a [`GateReceipt`]; callers cannot build one. A gate that panics is a denial with
//! code [`PANICKED`], never a crash of the caller.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The code of the denial a panicking gate turns into.
pub const PANICKED: &str = "gate_panicked";

/// Why a gate refused a proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// The gate that denied (filled in by the gate set).
    pub gate: String,
    /// A stable, machine-readable reason (`"overdraft"`).
    pub code: String,
    /// A sentence for people.
    pub message: String,
    /// Facts behind the decision, in the order the gate gave them.
    pub context: Vec<(String, String)>,
}

impl Denial {
    /// A denial with a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Denial {
            gate: String::new(),
            code: code.into(),
            message: message.into(),
            context: Vec::new(),
        }
    }

    /// Adds a fact behind the decision.
    #[must_use]
    pub fn with(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.context.push((key.into(), value.to_string()));
        self
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "denied by gate {:?} ({}): {}",
            self.gate, self.code, self.message
        )
    }
}

/// A named, pure predicate over a caller-defined context.
pub trait Gate<Ctx>: Send + Sync {
    /// The gate's name, reported in receipts and denials.
    fn name(&self) -> &str;
    /// Permits (`Ok`) or denies.
    fn check(&self, context: &Ctx) -> Result<(), Denial>;
}

/// A gate from a name and a closure.
pub fn gate<Ctx, F>(name: impl Into<String>, check: F) -> impl Gate<Ctx>
where
    F: Fn(&Ctx) -> Result<(), Denial> + Send + Sync,
{
    FnGate {
        name: name.into(),
        check,
    }
}

struct FnGate<F> {
    name: String,
    check: F,
}

impl<Ctx, F> Gate<Ctx> for FnGate<F>
where
    F: Fn(&Ctx) -> Result<(), Denial> + Send + Sync,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn check(&self, context: &Ctx) -> Result<(), Denial> {
        (self.check)(context)
    }
}

/// Proof that a gate set passed: the gates, in order. Only [`GateSet::evaluate`] and
/// [`GateSet::evaluate_all`] create one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GateReceipt {
    gates: Vec<String>,
    _sealed: Sealed,
}

/// Keeps `GateReceipt` from being built outside this module.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Sealed;

impl GateReceipt {
    /// The gates that passed, in evaluation order.
    pub fn gates(&self) -> &[String] {
        &self.gates
    }
}

/// What one gate did in an evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GateOutcome {
    /// It permitted.
    Permitted,
    /// It denied.
    Denied(Denial),
    /// It was not run (an earlier gate denied, fail-fast).
    Skipped,
}

/// An ordered set of gates over one context type.
pub struct GateSet<Ctx> {
    gates: Vec<Box<dyn Gate<Ctx>>>,
}

impl<Ctx> fmt::Debug for GateSet<Ctx> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.gates.iter().map(|g| g.name().to_string()))
            .finish()
    }
}

impl<Ctx> Default for GateSet<Ctx> {
    fn default() -> Self {
        GateSet { gates: Vec::new() }
    }
}

impl<Ctx> GateSet<Ctx> {
    /// An empty set (everything passes).
    pub fn new() -> Self {
        GateSet::default()
    }

    /// Appends a gate; gates run in the order they were added.
    #[must_use]
    pub fn with(mut self, gate: impl Gate<Ctx> + 'static) -> Self {
        self.gates.push(Box::new(gate));
        self
    }

    /// Runs the gates in order and stops at the first denial.
    pub fn evaluate(&self, context: &Ctx) -> Result<GateReceipt, Denial> {
        let trace = self.trace(context, true);
        Self::conclude(trace).map_err(|mut d| d.remove(0))
    }

    /// Runs every gate and collects every denial.
    pub fn evaluate_all(&self, context: &Ctx) -> Result<GateReceipt, Vec<Denial>> {
        Self::conclude(self.trace(context, false))
    }

    /// What each gate did, in order (`fail_fast`: gates after a denial are skipped).
    pub fn trace(&self, context: &Ctx, fail_fast: bool) -> Vec<(String, GateOutcome)> {
        let mut denied = false;
        self.gates
            .iter()
            .map(|g| {
                let name = g.name().to_string();
                if denied && fail_fast {
                    return (name, GateOutcome::Skipped);
                }
                let outcome = match catch_unwind(AssertUnwindSafe(|| g.check(context))) {
                    Ok(Ok(())) => GateOutcome::Permitted,
                    Ok(Err(mut d)) => {
                        d.gate.clone_from(&name);
                        GateOutcome::Denied(d)
                    }
                    Err(panic) => {
                        let message = panic
                            .downcast_ref::<&str>()
                            .map(|s| s.to_string())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "the gate panicked".to_string());
                        let mut d = Denial::new(PANICKED, message);
                        d.gate.clone_from(&name);
                        GateOutcome::Denied(d)
                    }
                };
                denied |= matches!(outcome, GateOutcome::Denied(_));
                (name, outcome)
            })
            .collect()
    }

    pub(crate) fn conclude(trace: Vec<(String, GateOutcome)>) -> Result<GateReceipt, Vec<Denial>> {
        let mut passed = Vec::new();
        let mut denials = Vec::new();
        for (name, outcome) in trace {
            match outcome {
                GateOutcome::Permitted => passed.push(name),
                GateOutcome::Denied(d) => denials.push(d),
                GateOutcome::Skipped => {}
            }
        }
        if denials.is_empty() {
            Ok(GateReceipt {
                gates: passed,
                _sealed: Sealed,
            })
        } else {
            Err(denials)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Account {
        balance: i64,
        amount: i64,
    }

    fn set() -> GateSet<Account> {
        GateSet::new()
            .with(gate("positive", |a: &Account| {
                if a.amount > 0 {
                    Ok(())
                } else {
                    Err(Denial::new("not_positive", "amounts must be positive")
                        .with("amount", a.amount))
                }
            }))
            .with(gate("overdraft", |a: &Account| {
                if a.balance >= a.amount {
                    Ok(())
                } else {
                    Err(Denial::new("overdraft", "not enough money")
                        .with("balance", a.balance)
                        .with("amount", a.amount))
                }
            }))
            .with(gate("fragile", |a: &Account| {
                assert!(a.amount != 13, "unlucky amount");
                Ok(())
            }))
    }

    #[test]
    fn the_pipeline_commits_only_after_the_gates_pass() {
        let mut committed = Vec::new();
        let ok = set()
            .commit(
                &Account {
                    balance: 50,
                    amount: 20,
                },
                "withdraw 20",
                |p, g| {
                    committed.push((p.to_string(), g.gates().len()));
                    Ok::<_, String>(7u64)
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(
            (ok.payload, ok.receipt, ok.gates.gates().len()),
            ("withdraw 20", 7, 3)
        );
        let denied = set()
            .commit(
                &Account {
                    balance: 5,
                    amount: 20,
                },
                "withdraw 20",
                |_, _| -> Result<u64, String> { panic!("must not commit a denied proposal") },
            )
            .unwrap();
        assert_eq!(denied.unwrap_err().code, "overdraft");
        let failed = set().commit(
            &Account {
                balance: 50,
                amount: 1,
            },
            (),
            |_, _| Err::<(), _>("disk full"),
        );
        assert_eq!(failed.unwrap_err(), "disk full");
        assert_eq!(committed, [("withdraw 20".to_string(), 3)]);
    }

    #[test]
    fn a_pass_lists_every_gate_in_order() {
        let r = set()
            .evaluate(&Account {
                balance: 100,
                amount: 10,
            })
            .unwrap();
        assert_eq!(r.gates(), ["positive", "overdraft", "fragile"]);
    }

    #[test]
    fn evaluate_stops_at_the_first_denial() {
        let d = set()
            .evaluate(&Account {
                balance: 0,
                amount: -5,
            })
            .unwrap_err();
        assert_eq!(
            (d.gate.as_str(), d.code.as_str()),
            ("positive", "not_positive")
        );
        let trace = set().trace(
            &Account {
                balance: 0,
                amount: -5,
            },
            true,
        );
        assert!(matches!(trace[1].1, GateOutcome::Skipped));
        assert!(matches!(trace[2].1, GateOutcome::Skipped));
    }

    #[test]
    fn evaluate_all_collects_every_denial_and_panics_become_denials() {
        let ds = set()
            .evaluate_all(&Account {
                balance: 0,
                amount: 13,
            })
            .unwrap_err();
        let codes: Vec<_> = ds
            .iter()
            .map(|d| (d.gate.as_str(), d.code.as_str()))
            .collect();
        assert_eq!(codes, [("overdraft", "overdraft"), ("fragile", PANICKED)]);
        assert!(ds[1].message.contains("unlucky amount"));
        assert_eq!(
            ds[0].context,
            [
                ("balance".to_string(), "0".to_string()),
                ("amount".to_string(), "13".to_string())
            ]
        );
    }
}

/// How [`Store::decide`](crate::Store::decide) retries and records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecideOptions {
    /// Decisions attempted before a version conflict is returned. Default 16.
    pub attempts: u32,
    /// Record each denial on the entity's chain (`RecordedDenial`). Default false.
    pub record_denials: bool,
}

impl Default for DecideOptions {
    fn default() -> Self {
        DecideOptions {
            attempts: 16,
            record_denials: false,
        }
    }
}

/// A commit that passed its gates: the payload, the commit's result, the gates.
#[derive(Debug)]
pub struct Committed<T, R> {
    /// The payload committed.
    pub payload: T,
    /// What the commit closure returned (usually an `AppendReceipt`).
    pub receipt: R,
    /// The gates that passed.
    pub gates: GateReceipt,
}

impl<Ctx> GateSet<Ctx> {
    /// The pipeline: evaluates the gates over `context` and, only if they pass, hands
    /// the payload and the gate receipt to `commit` (which does the append). A denial
    /// is returned as `Ok(Err(denial))` without calling `commit`.
    pub fn commit<T, R, E>(
        &self,
        context: &Ctx,
        payload: T,
        commit: impl FnOnce(&T, &GateReceipt) -> Result<R, E>,
    ) -> Result<Result<Committed<T, R>, Denial>, E> {
        match self.evaluate(context) {
            Ok(gates) => {
                let receipt = commit(&payload, &gates)?;
                Ok(Ok(Committed {
                    payload,
                    receipt,
                    gates,
                }))
            }
            Err(denial) => Ok(Err(denial)),
        }
    }
}

/// What [`Store::decide`](crate::Store::decide) did.
/// What [`Store::propose_raw`](crate::Store::propose_raw) did.
#[derive(Debug)]
#[non_exhaustive]
pub enum RawDecision {
    /// Every gate permitted; the event was appended.
    Committed {
        /// Its receipt.
        receipt: crate::AppendReceipt,
        /// The gates that passed.
        gates: GateReceipt,
    },
    /// A gate denied; nothing was appended but the recorded denial.
    Denied {
        /// The first denial.
        denial: Denial,
        /// The receipt of the `RecordedDenial` store record.
        recorded: crate::AppendReceipt,
    },
}

#[derive(Debug)]
pub enum Decision<E> {
    /// The gates passed and the event was appended.
    Committed {
        /// The append's receipt.
        receipt: crate::AppendReceipt,
        /// The gates that passed.
        gates: GateReceipt,
        /// The committed payload.
        payload: E,
    },
    /// A gate refused; nothing was appended.
    Denied(Denial),
}

/// The kind of a recorded denial: a store-owned record on the entity's chain.
pub(crate) const DENIAL_KIND: crate::EventKind = crate::EventKind::custom(0, 1);
/// The kind of a bypass audit record, appended with the bypassed event.
pub(crate) const BYPASS_KIND: crate::EventKind = crate::EventKind::custom(0, 2);

/// What was refused and why, recorded on the store entity `batpak:gate` in the
/// refused coordinate's scope: the entity refused, the evaluation trace, the proposed
/// kind and the digest of the proposed payload (not the payload). Read them with
/// `Region::all().entity("batpak:gate").kind(RecordedDenial::KIND)`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordedDenial {
    /// The entity the proposal would have appended to. Empty in denials written
    /// before format v2, which sat on that entity's own chain.
    #[serde(default)]
    pub entity: String,
    /// The kind the proposal would have appended.
    pub proposed_kind: u16,
    /// blake3 of the proposed payload's bytes, in hex.
    pub payload_digest: String,
    /// Each gate in order: `permitted`, `denied` (with code, message, context) or
    /// `skipped`.
    pub trace: Vec<TraceEntry>,
}

/// One gate's line in a [`RecordedDenial`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TraceEntry {
    /// The gate.
    pub gate: String,
    /// `permitted`, `denied` or `skipped`.
    pub outcome: String,
    /// The denial code, when denied.
    pub code: Option<String>,
    /// The denial message, when denied.
    pub message: Option<String>,
    /// The denial's facts, when denied.
    pub context: Vec<(String, String)>,
}

impl crate::EventPayload for RecordedDenial {
    const KIND: crate::EventKind = DENIAL_KIND;
}

/// Why gates were skipped for a committed event: recorded with it, atomically, on
/// `batpak:gate` in its scope, caused by the event.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecordedBypass {
    /// The reason given.
    pub reason: String,
    /// Who approved it, if anyone was named.
    pub approver: Option<String>,
}

impl crate::EventPayload for RecordedBypass {
    const KIND: crate::EventKind = BYPASS_KIND;
}

/// An event proposed for commit through gates.
#[derive(Clone, Debug)]
pub struct Proposal<T> {
    /// Where it would land.
    pub coordinate: crate::Coordinate,
    /// The payload.
    pub payload: T,
    /// Append options (expected version, causation, ...).
    pub options: crate::AppendOptions,
    /// Record a denial (`RecordedDenial`, on `batpak:gate`). Default false.
    pub record_denial: bool,
}

impl<T> Proposal<T> {
    /// A proposal with default options that does not record denials.
    pub fn new(coordinate: crate::Coordinate, payload: T) -> Self {
        Proposal {
            coordinate,
            payload,
            options: crate::AppendOptions::default(),
            record_denial: false,
        }
    }

    /// Records a denial of this proposal on the entity's chain.
    #[must_use]
    pub fn recording_denials(mut self) -> Self {
        self.record_denial = true;
        self
    }
}

pub(crate) fn trace_entries(trace: Vec<(String, GateOutcome)>) -> Vec<TraceEntry> {
    trace
        .into_iter()
        .map(|(gate, outcome)| match outcome {
            GateOutcome::Permitted => TraceEntry {
                gate,
                outcome: "permitted".into(),
                code: None,
                message: None,
                context: Vec::new(),
            },
            GateOutcome::Skipped => TraceEntry {
                gate,
                outcome: "skipped".into(),
                code: None,
                message: None,
                context: Vec::new(),
            },
            GateOutcome::Denied(d) => TraceEntry {
                gate,
                outcome: "denied".into(),
                code: Some(d.code),
                message: Some(d.message),
                context: d.context,
            },
        })
        .collect()
}
