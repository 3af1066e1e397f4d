"""stackmind.sandbox"""
