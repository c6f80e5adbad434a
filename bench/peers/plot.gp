# bench/peers/plot.gp: the plots of bench/peers.lua, which writes the data
# files and runs
#   gnuplot -e "latdat='...'; scaledat='...'; outdir='bench/results'; nmethods=N" bench/peers/plot.gp
#
# latdat:   a header line, then one line per method, tab-separated: label, median_ms, p99_ms,
#           group (0 step, 1 cold, 2 inmate)
# scaledat: one block per method (blocks apart by two blank lines): "name", then n wall_s cpu_s

set terminal pngcairo size 1100,760 font "DejaVu Sans,9" noenhanced
# --- latency.png: median (bar) and p99 (mark) per method, log scale ----------
set output outdir."/latency.png"
set title "Latency by method, one run, same machine and image (bar and number: median; x: p99; log scale)"
set logscale x 10
set xlabel "milliseconds"
set format x "%g"
set grid xtics mxtics
set datafile separator "\t"
set key autotitle columnheader
set xrange [0.01:20000]
set yrange [-0.7:*]
set ytics scale 0
set key bottom right
set style fill solid 0.75 noborder
max(a, b) = a > b ? a : b
colour(g) = g == 0 ? 0x4477aa : (g == 1 ? 0xcc6677 : 0x228833)
plot latdat using (sqrt(0.01*$2)):0:(0.01):2:($0-0.38):($0+0.38):(colour($4)):ytic(1) \
       with boxxyerror lc rgb variable notitle, \
     latdat using 3:0 with points pt 2 ps 1.5 lc rgb "black" title "p99", \
     latdat using (max($2, $3)):0:(sprintf("%.3g ms", $2)) with labels left offset 1,0 notitle
unset logscale
set datafile separator whitespace
unset key
unset xrange
unset yrange
unset format
unset xlabel

# --- scaling.png: N boxes at once; wall time and client CPU ------------------
set output outdir."/scaling.png"
set multiplot layout 1,2 title "N boxes at once, each: start + one step (true) + gone"
set key top left autotitle columnheader
set grid
set logscale xy 10
set xlabel "N (concurrent boxes)"
set xtics (1, 10, 50, 100)
set ytics auto
set ylabel "wall seconds"
set title "wall time"
plot for [i=0:nmethods-1] scaledat index i using 1:2 with linespoints lw 2 pt 7 title columnheader(1)
set ylabel "CPU seconds of the client process"
set title "client CPU (for the CLI: its docker processes)"
plot for [i=0:nmethods-1] scaledat index i using 1:3 with linespoints lw 2 pt 7 title columnheader(1)
unset multiplot
