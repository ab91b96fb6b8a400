//! Terminal progress: indicatif bars, shown only when stderr is a terminal and not `--quiet`.
