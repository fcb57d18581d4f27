import AirlockCommands

AirlockCommand.main()
