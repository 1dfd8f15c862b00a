"""recency"""
