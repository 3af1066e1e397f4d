"""stackmind.policies"""
