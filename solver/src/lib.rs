//! rbuild's solver: lowers parsed Dockerfile stages into an op DAG (petgraph),
//! computes BuildKit-style content-addressed cache keys before execution, and
//! schedules independent vertices in parallel. It talks to the outside world only
//! through its `Worker` trait, so its tests run against a fake worker.
//!
//! Empty for now: the build engine lands with issue "The build engine".
