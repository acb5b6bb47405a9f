from notifyflow.cli import main

main()
