"""What a trend is made of, apart from any model: the photos of each period (`periods`, `image_files`) and the
share timelines with their intervals, growth tests and forecasts (`timeline`)."""
