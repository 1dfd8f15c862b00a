"""Request logs (native, OpenInference, OTel GenAI) and the recency report: how old what queries
retrieved was, and how often it was stale.
"""
