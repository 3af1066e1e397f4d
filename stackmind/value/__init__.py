"""stackmind.value"""
