print("kilntally")
