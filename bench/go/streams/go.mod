module plutos.dev/bench/streams

go 1.22
