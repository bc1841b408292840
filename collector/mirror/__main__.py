from collector.mirror.cli import main

main()
