"""Live feedback: event schemas, the shopper simulator, the aggregator and its S3 windows."""
