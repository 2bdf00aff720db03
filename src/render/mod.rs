//! Step 4 of the pipeline: render a plan as text (terraform-style), JSON or Markdown.
