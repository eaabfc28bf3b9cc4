from minivess.cli import main

main()
