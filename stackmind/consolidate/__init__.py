"""stackmind.consolidate"""
