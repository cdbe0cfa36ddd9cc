"""Jobs: the whole life of a job, one module per stage of it.

- `submission`: a client's job is created and its price held.
- `handout`: a poll hands pending jobs to a miner (`unrenderable` sets aside the ones no answer could carry).
- `leases`: a running job's lease is renewed by heartbeats, released, or lapses and the job is requeued.
- `results`: a miner's result ends the attempt, and its receipt is signed.
- `output`: the miner holding a job posts partial output as it goes; the result's receipt signs its hash.
- `cancellation` and `operator_actions`: a client or an operator ends or requeues a job.
- `maintenance`: deadlines pass, and the stored state catches up with what reads already show.
- `settlement`: a job's end moves its hold: paid out on completion, given back otherwise.
- `transitions`: the one way a job's status changes, a compare-and-set that stores the change as an event.

App dependencies point one way: accounts ← miners ← receipts ← jobs. Hand-written SQL lives in `jobs.queries`.
"""
