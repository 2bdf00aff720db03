//! Step 6 of the pipeline: read changed users back and check the live state now matches the plan.
