//! Step 5 of the pipeline: apply a plan through the Graph client.
