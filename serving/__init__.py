"""The BentoML service for stagediff models: serving.service (endpoints), serving.packaging (model store and
Bento), serving.requests (checks and limits), serving.batching, serving.encoding. See docs/serving.md."""
