//! Examples of embedding Wharf's libraries; see the `[[example]]` targets.
