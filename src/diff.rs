//! Step 3 of the pipeline: the diff. A pure function from (desired, live, now) to a plan: no I/O.
