from services.sync.main import main

main()
