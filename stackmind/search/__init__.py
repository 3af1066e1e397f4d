"""stackmind.search"""
