//! End-to-end tests of the backtest: the policy through `decide` on hand-made traces.
