//! Saved runs: the training state that `train --resume` continues from ([`state`]).

pub mod state;
