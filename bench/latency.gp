# bench/latency.gp: end-to-end chat latency (send -> chat_message, p50 and p99)
# against offered load, Switchboard next to the bare relay, and the p99 of the bus alone
# (sb-natsbench --rate: request -> reply through nats-server, nothing else). bench/run.sh calls it as
#   gnuplot -e "datafile='latency.dat'; outfile='latency.png'" bench/latency.gp
if (!exists("datafile")) datafile = 'bench/results/latency.dat'
if (!exists("outfile")) outfile = 'bench/results/latency.png'
set terminal pngcairo size 900,540 font ",11" noenhanced
set output outfile
set title "Chat end-to-end latency against offered load (same machine, same run)"
set xlabel "offered load (messages/s, open loop)"
set ylabel "latency (ms, log scale)"
set logscale y
set grid xtics ytics mytics
set key top left
set xrange [0:*]
set format x "%.0f"
plot datafile using 1:4 with linespoints lw 2 pt 7 lc rgb "#1f77b4" title "Switchboard p50", \
     datafile using 1:5 with linespoints lw 2 pt 5 lc rgb "#d62728" title "Switchboard p99", \
     datafile using 1:2 with linespoints lw 1 dt 2 pt 6 lc rgb "#1f77b4" title "bare relay p50", \
     datafile using 1:3 with linespoints lw 1 dt 2 pt 4 lc rgb "#d62728" title "bare relay p99", \
     datafile using 1:9 with linespoints lw 1 dt 3 pt 8 lc rgb "#2ca02c" title "bus alone p99"
