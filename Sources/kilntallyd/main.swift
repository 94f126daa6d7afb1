print("kilntallyd")
